// cuDNN convolutions (forward, backward data, backward filter), the one kernel file that includes
// cuDNN (dynload.cpp, which loads it, is the other). Descriptors are built once per (device, dtype,
// geometry) and cached with the algorithm chosen for each pass: the first deterministic one
// cudnnGetConvolution*Algorithm_v7 ranks (or, with EMBER_CUDNN_BENCHMARK=1, that
// cudnnFindConvolution*Algorithm times fastest) whose workspace fits 1 GiB. f32 runs without TF32
// unless EMBER_ALLOW_TF32=1. Workspace comes from the caching allocator. EMBER_DISABLE_CUDNN=1 sends
// every convolution to the direct kernels, and so does a process that cannot load libcudnn.
#include "ember/config.h"
#include "kernels/cuda/conv_cudnn.h"
#include "kernels/cuda/launch.h"

#if EMBER_WITH_CUDNN
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

#include "kernels/cuda/dynload_cudnn.h"

namespace ember::cu {
namespace {

// Throws "[cudnn] <call> failed: <status>" unless st is CUDNN_STATUS_SUCCESS.
void check_cudnn(cudnnStatus_t st, const char* call) {
  if (st != CUDNN_STATUS_SUCCESS) EMBER_THROW("[cudnn] ", call, " failed: ", cudnn().GetErrorString(st));
}
#define EMBER_CUDNN_CHECK(expr) check_cudnn((expr), #expr)

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, "1") == 0;
}
bool allow_tf32() {
  static const bool on = env_flag("EMBER_ALLOW_TF32");
  return on;
}
bool benchmark_mode() {
  static const bool on = env_flag("EMBER_CUDNN_BENCHMARK");
  return on;
}

constexpr size_t kMaxWorkspace = size_t{1} << 30;

// The calling thread's cuDNN handle for a device, bound to the current stream.
cudnnHandle_t handle(int device) {
  struct Handles {
    cudnnHandle_t h[16] = {};
    ~Handles() {
      for (cudnnHandle_t x : h)
        if (x) cudnn().Destroy(x);
    }
  };
  thread_local Handles hs;
  EMBER_CHECK(device >= 0 && device < 16, "[cudnn] device index ", device, " is out of range");
  if (!hs.h[device]) EMBER_CUDNN_CHECK(cudnn().Create(&hs.h[device]));
  EMBER_CUDNN_CHECK(cudnn().SetStream(hs.h[device], current_stream(device)));
  return hs.h[device];
}

// An algorithm picked for one pass.
struct Choice {
  bool tried = false;  // selection ran
  bool ok = false;     // a usable algorithm exists
  int algo = 0;
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

// Descriptors for one geometry; one convolution descriptor per pass, since each pass may run
// with its own math type.
struct Plan {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv[3] = {};
  bool supported = false;
  Choice choice[3];
  ~Plan() {
    if (x) cudnn().DestroyTensorDescriptor(x);
    if (y) cudnn().DestroyTensorDescriptor(y);
    if (w) cudnn().DestroyFilterDescriptor(w);
    for (auto c : conv)
      if (c) cudnn().DestroyConvolutionDescriptor(c);
  }
};

using Key = std::array<int64_t, 18>;

Key make_key(int device, DType dt, const kernels::ConvGeom& g) {
  return {device, static_cast<int64_t>(dt), g.N, g.C, g.H, g.W, g.K, g.kh, g.kw, g.OH, g.OW,
          g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups};
}

bool fits_int(const kernels::ConvGeom& g) {
  const int64_t lim = int64_t{1} << 31;
  for (int64_t v : {g.N, g.C, g.H, g.W, g.K, g.kh, g.kw, g.OH, g.OW, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.groups})
    if (v < 0 || v >= lim) return false;
  // cuDNN indexes tensors with 32-bit offsets
  return g.N * g.C * g.H * g.W < lim && g.N * g.K * g.OH * g.OW < lim && g.K * (g.C / g.groups) * g.kh * g.kw < lim;
}

// Builds the descriptors; leaves supported false when cuDNN rejects the geometry (for instance a
// transposed convolution whose output_padding reaches the stride, which has no cuDNN forward twin).
void build(Plan& p, DType dt, const kernels::ConvGeom& g) {
  if (!fits_int(g)) return;
  const cudnnDataType_t cdt = dt == DType::f32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
  auto i = [](int64_t v) { return static_cast<int>(v); };
  EMBER_CUDNN_CHECK(cudnn().CreateTensorDescriptor(&p.x));
  EMBER_CUDNN_CHECK(cudnn().CreateTensorDescriptor(&p.y));
  EMBER_CUDNN_CHECK(cudnn().CreateFilterDescriptor(&p.w));
  for (auto& c : p.conv) EMBER_CUDNN_CHECK(cudnn().CreateConvolutionDescriptor(&c));
  const Cudnn& api = cudnn();
  if (api.SetTensor4dDescriptor(p.x, CUDNN_TENSOR_NCHW, cdt, i(g.N), i(g.C), i(g.H), i(g.W)) != CUDNN_STATUS_SUCCESS ||
      api.SetTensor4dDescriptor(p.y, CUDNN_TENSOR_NCHW, cdt, i(g.N), i(g.K), i(g.OH), i(g.OW)) != CUDNN_STATUS_SUCCESS ||
      api.SetFilter4dDescriptor(p.w, cdt, CUDNN_TENSOR_NCHW, i(g.K), i(g.C / g.groups), i(g.kh), i(g.kw)) !=
          CUDNN_STATUS_SUCCESS)
    return;
  for (auto c : p.conv) {
    if (cudnn().SetConvolution2dDescriptor(c, i(g.ph), i(g.pw), i(g.sh), i(g.sw), i(g.dh), i(g.dw),
                                           CUDNN_CROSS_CORRELATION, cdt) != CUDNN_STATUS_SUCCESS ||
        cudnn().SetConvolutionGroupCount(c, i(g.groups)) != CUDNN_STATUS_SUCCESS)
      return;
  }
  int n = 0, k = 0, oh = 0, ow = 0;
  if (cudnn().GetConvolution2dForwardOutputDim(p.conv[0], p.x, p.w, &n, &k, &oh, &ow) != CUDNN_STATUS_SUCCESS) return;
  p.supported = n == g.N && k == g.K && oh == g.OH && ow == g.OW;
}

// Whether a ranked algorithm is acceptable: it ran (or would run), is deterministic, respects
// the TF32 setting for f32, and its workspace fits.
template <typename Perf>
bool acceptable(const Perf& perf, DType dt) {
  if (perf.status != CUDNN_STATUS_SUCCESS || perf.determinism != CUDNN_DETERMINISTIC) return false;
  if (dt == DType::f32 && !allow_tf32() &&
      (perf.mathType == CUDNN_TENSOR_OP_MATH || perf.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
    return false;
  return perf.memory <= kMaxWorkspace;
}

template <typename Perf>
void pick(Choice& c, const Perf* perf, int returned, DType dt) {
  for (int r = 0; r < returned; ++r) {
    if (!acceptable(perf[r], dt)) continue;
    c.ok = true;
    c.algo = static_cast<int>(perf[r].algo);
    c.workspace = perf[r].memory;
    c.math = dt == DType::f32 && !allow_tf32() ? CUDNN_FMA_MATH : perf[r].mathType;
    return;
  }
}

void choose(Plan& p, ConvPass pass, DType dt, cudnnHandle_t h) {
  const int ip = static_cast<int>(pass);
  Choice& c = p.choice[ip];
  cudnnConvolutionDescriptor_t conv = p.conv[ip];
  // Rank under the math type the pass will run with (FMA only for f32 without TF32).
  EMBER_CUDNN_CHECK(cudnn().SetConvolutionMathType(
      conv, dt == DType::f32 && !allow_tf32() ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH));
  int returned = 0;
  const bool bench = benchmark_mode();
  c.tried = true;
  // A query that fails (a dtype or geometry this cuDNN build does not cover) leaves c.ok false, so
  // the direct kernels take the pass.
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  switch (pass) {
    case ConvPass::Forward: {
      cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
      st = bench ? cudnn().FindConvolutionForwardAlgorithm(h, p.x, p.w, conv, p.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                           &returned, perf)
                 : cudnn().GetConvolutionForwardAlgorithm_v7(h, p.x, p.w, conv, p.y, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
                                                             &returned, perf);
      if (st == CUDNN_STATUS_SUCCESS) pick(c, perf, returned, dt);
      break;
    }
    case ConvPass::BackwardData: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      constexpr int n = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
      st = bench ? cudnn().FindConvolutionBackwardDataAlgorithm(h, p.w, p.y, conv, p.x, n, &returned, perf)
                 : cudnn().GetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, conv, p.x, n, &returned, perf);
      if (st == CUDNN_STATUS_SUCCESS) pick(c, perf, returned, dt);
      break;
    }
    case ConvPass::BackwardFilter: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      constexpr int n = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
      st = bench ? cudnn().FindConvolutionBackwardFilterAlgorithm(h, p.x, p.y, conv, p.w, n, &returned, perf)
                 : cudnn().GetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, conv, p.w, n, &returned, perf);
      if (st == CUDNN_STATUS_SUCCESS) pick(c, perf, returned, dt);
      break;
    }
  }
  if (c.ok) EMBER_CUDNN_CHECK(cudnn().SetConvolutionMathType(conv, c.math));
}

// cuDNN is optional at run time as at build time: where libcudnn cannot be loaded, the direct kernels
// take every convolution, and stderr says so once.
bool cudnn_loaded() {
  static const bool ok = [] {
    try {
      cudnn();
      return true;
    } catch (const Error& e) {
      std::fprintf(stderr, "%s\n[cudnn] using Ember's direct convolution kernels instead\n", e.what());
      return false;
    }
  }();
  return ok;
}

std::mutex g_mu;
std::map<Key, std::unique_ptr<Plan>>& plans() {
  static auto* m = new std::map<Key, std::unique_ptr<Plan>>;  // never destroyed (outlives handles)
  return *m;
}

}  // namespace

bool cudnn_conv2d(ConvPass pass, const kernels::ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& y) {
  const DType dt = x.dtype();
  if (dt != DType::f32 && dt != DType::f64) return false;
  if (env_flag("EMBER_DISABLE_CUDNN")) return false;  // read per call: tests switch it to check the direct kernels
  if (!cudnn_loaded()) return false;
  const int dev = x.device().index;
  cudnnHandle_t h = handle(dev);
  const Plan* plan = nullptr;
  Choice c;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto& slot = plans()[make_key(dev, dt, g)];
    if (!slot) {
      slot = std::make_unique<Plan>();
      build(*slot, dt, g);
    }
    if (!slot->supported) return false;
    if (!slot->choice[static_cast<int>(pass)].tried) choose(*slot, pass, dt, h);
    plan = slot.get();
    c = plan->choice[static_cast<int>(pass)];
  }
  if (!c.ok) return false;
  Scratch ws(dev, c.workspace);
  cudnnConvolutionDescriptor_t conv = plan->conv[static_cast<int>(pass)];
  const float af = 1.0f, bf = 0.0f;
  const double ad = 1.0, bd = 0.0;
  const void* alpha = dt == DType::f32 ? static_cast<const void*>(&af) : static_cast<const void*>(&ad);
  const void* beta = dt == DType::f32 ? static_cast<const void*>(&bf) : static_cast<const void*>(&bd);
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  const char* call = "";
  switch (pass) {
    case ConvPass::Forward:
      call = "cudnnConvolutionForward";
      st = cudnn().ConvolutionForward(h, alpha, plan->x, x.data_ptr(), plan->w, w.data_ptr(), conv,
                                      static_cast<cudnnConvolutionFwdAlgo_t>(c.algo), ws.get(), c.workspace, beta,
                                      plan->y, y.data_ptr());
      break;
    case ConvPass::BackwardData:
      call = "cudnnConvolutionBackwardData";
      st = cudnn().ConvolutionBackwardData(h, alpha, plan->w, w.data_ptr(), plan->y, y.data_ptr(), conv,
                                           static_cast<cudnnConvolutionBwdDataAlgo_t>(c.algo), ws.get(), c.workspace,
                                           beta, plan->x, x.data_ptr());
      break;
    case ConvPass::BackwardFilter:
      call = "cudnnConvolutionBackwardFilter";
      st = cudnn().ConvolutionBackwardFilter(h, alpha, plan->x, x.data_ptr(), plan->y, y.data_ptr(), conv,
                                             static_cast<cudnnConvolutionBwdFilterAlgo_t>(c.algo), ws.get(),
                                             c.workspace, beta, plan->w, w.data_ptr());
      break;
  }
  if (st == CUDNN_STATUS_NOT_SUPPORTED || st == CUDNN_STATUS_BAD_PARAM) {
    // An algorithm the heuristics offered but that refuses to run: remember, say so once, and use
    // the direct kernels for this shape from now on.
    std::fprintf(stderr, "[cudnn] %s refused algorithm %d (%s); using Ember's direct kernels for this shape\n", call,
                 c.algo, cudnn().GetErrorString(st));
    std::lock_guard<std::mutex> lk(g_mu);
    plans()[make_key(dev, dt, g)]->choice[static_cast<int>(pass)].ok = false;
    return false;
  }
  check_cudnn(st, call);
  return true;
}

}  // namespace ember::cu

#else  // no cuDNN in this build: conv.cu's direct kernels do all the work

namespace ember::cu {
bool cudnn_conv2d(ConvPass, const kernels::ConvGeom&, const Tensor&, const Tensor&, const Tensor&) { return false; }
}  // namespace ember::cu

#endif
