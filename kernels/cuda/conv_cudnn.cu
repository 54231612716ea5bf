// cuDNN convolutions (forward, backward data, backward filter), the one kernel file that includes
// cuDNN (dynload.cpp, which loads it, is the other). Descriptors are built once per (device, dtype,
// geometry) and cached with the algorithms acceptable for each pass, in the order
// cudnnGetConvolution*Algorithm_v7 ranks them (or, with EMBER_CUDNN_BENCHMARK=1,
// cudnnFindConvolution*Algorithm times them): deterministic, within the TF32 setting, and with a
// workspace (queried under the math type the algorithm runs with) of at most 1 GiB. The first one
// runs; one that cuDNN refuses at run time hands the pass to the next. f32 runs without TF32
// unless EMBER_ALLOW_TF32=1. Workspace comes from the caching allocator. EMBER_DISABLE_CUDNN=1 sends
// every convolution to the direct kernels; so does a process that cannot load libcudnn, and a pass
// left without an algorithm, unless EMBER_CUDNN_STRICT=1, which makes those two an error instead.
#include "ember/config.h"
#include "kernels/cuda/conv_cudnn.h"
#include "kernels/cuda/launch.h"

#include <cstdlib>
#include <cstring>
#include <string>

namespace ember::cu {
namespace {
// Whether environment variable `name` is "1" (read per call: tests switch these).
bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v && std::strcmp(v, "1") == 0;
}
}  // namespace

bool cudnn_strict() { return env_flag("EMBER_CUDNN_STRICT"); }

void cudnn_fallback(const std::string& why) {
  if (cudnn_strict()) EMBER_THROW("[cudnn] ", why, " (EMBER_CUDNN_STRICT=1 refuses the direct kernels)");
}
}  // namespace ember::cu

#if EMBER_WITH_CUDNN
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cuda/dynload_cudnn.h"

namespace ember::cu {
namespace {

const char* pass_name(ConvPass pass) {
  switch (pass) {
    case ConvPass::Forward: return "the forward pass";
    case ConvPass::BackwardData: return "the input gradient";
    case ConvPass::BackwardFilter: return "the weight gradient";
  }
  return "";
}

// Throws "[cudnn] <call> failed: <status>" unless st is CUDNN_STATUS_SUCCESS.
void check_cudnn(cudnnStatus_t st, const char* call) {
  if (st != CUDNN_STATUS_SUCCESS) EMBER_THROW("[cudnn] ", call, " failed: ", cudnn().GetErrorString(st));
}
#define EMBER_CUDNN_CHECK(expr) check_cudnn((expr), #expr)

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

// One acceptable algorithm for a pass, with the workspace it needs under the math type it runs with.
struct Candidate {
  int algo = 0;
  size_t workspace = 0;
  cudnnMathType_t math = CUDNN_DEFAULT_MATH;
};

// The algorithms for one pass, best first; `next` is the one in use. When cuDNN refuses to run the
// one in use, the pass moves on to the next instead of leaving cuDNN.
struct Choice {
  bool tried = false;  // selection ran
  std::vector<Candidate> candidates;
  size_t next = 0;
  std::string why_none;  // when there is no candidate: why, for the strict mode's error
  bool ok() const { return next < candidates.size(); }
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
  // The data type of the tensors, and the one the convolution computes in (float32 for f16/bf16).
  const cudnnDataType_t cdt = dt == DType::f32    ? CUDNN_DATA_FLOAT
                              : dt == DType::f64  ? CUDNN_DATA_DOUBLE
                              : dt == DType::bf16 ? CUDNN_DATA_BFLOAT16
                                                  : CUDNN_DATA_HALF;
  const cudnnDataType_t compute = dt == DType::f64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
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
                                           CUDNN_CROSS_CORRELATION, compute) != CUDNN_STATUS_SUCCESS ||
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

// The workspace `algo` needs for `pass` under the math type now set on conv; false when cuDNN
// cannot say (the algorithm is then not used).
bool workspace_size(const Plan& p, ConvPass pass, cudnnConvolutionDescriptor_t conv, cudnnHandle_t h, int algo,
                    size_t& bytes) {
  const Cudnn& api = cudnn();
  cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
  switch (pass) {
    case ConvPass::Forward:
      st = api.GetConvolutionForwardWorkspaceSize(h, p.x, p.w, conv, p.y, static_cast<cudnnConvolutionFwdAlgo_t>(algo),
                                                  &bytes);
      break;
    case ConvPass::BackwardData:
      st = api.GetConvolutionBackwardDataWorkspaceSize(h, p.w, p.y, conv, p.x,
                                                       static_cast<cudnnConvolutionBwdDataAlgo_t>(algo), &bytes);
      break;
    case ConvPass::BackwardFilter:
      st = api.GetConvolutionBackwardFilterWorkspaceSize(h, p.x, p.y, conv, p.w,
                                                         static_cast<cudnnConvolutionBwdFilterAlgo_t>(algo), &bytes);
      break;
  }
  return st == CUDNN_STATUS_SUCCESS;
}

// Every acceptable algorithm of the ranking, in its order, with its workspace queried again under
// the math type it will run with (the ranking's figure may be for another one).
template <typename Perf>
void pick(const Plan& p, ConvPass pass, Choice& c, const Perf* perf, int returned, DType dt, cudnnHandle_t h) {
  cudnnConvolutionDescriptor_t conv = p.conv[static_cast<int>(pass)];
  for (int r = 0; r < returned; ++r) {
    if (!acceptable(perf[r], dt)) continue;
    Candidate k;
    k.algo = static_cast<int>(perf[r].algo);
    k.math = dt == DType::f32 && !allow_tf32() ? CUDNN_FMA_MATH : perf[r].mathType;
    if (cudnn().SetConvolutionMathType(conv, k.math) != CUDNN_STATUS_SUCCESS) continue;
    if (!workspace_size(p, pass, conv, h, k.algo, k.workspace) || k.workspace > kMaxWorkspace) continue;
    c.candidates.push_back(k);
  }
  if (c.candidates.empty())
    c.why_none = str_cat("none of the ", returned,
                         " ranked algorithms is deterministic, within the TF32 setting and the 1 GiB workspace");
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
      if (st == CUDNN_STATUS_SUCCESS) pick(p, pass, c, perf, returned, dt, h);
      break;
    }
    case ConvPass::BackwardData: {
      cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
      constexpr int n = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
      st = bench ? cudnn().FindConvolutionBackwardDataAlgorithm(h, p.w, p.y, conv, p.x, n, &returned, perf)
                 : cudnn().GetConvolutionBackwardDataAlgorithm_v7(h, p.w, p.y, conv, p.x, n, &returned, perf);
      if (st == CUDNN_STATUS_SUCCESS) pick(p, pass, c, perf, returned, dt, h);
      break;
    }
    case ConvPass::BackwardFilter: {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
      constexpr int n = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
      st = bench ? cudnn().FindConvolutionBackwardFilterAlgorithm(h, p.x, p.y, conv, p.w, n, &returned, perf)
                 : cudnn().GetConvolutionBackwardFilterAlgorithm_v7(h, p.x, p.y, conv, p.w, n, &returned, perf);
      if (st == CUDNN_STATUS_SUCCESS) pick(p, pass, c, perf, returned, dt, h);
      break;
    }
  }
  if (st != CUDNN_STATUS_SUCCESS)
    c.why_none = str_cat("the algorithm query failed: ", cudnn().GetErrorString(st));
  if (c.ok()) EMBER_CUDNN_CHECK(cudnn().SetConvolutionMathType(conv, c.candidates[c.next].math));
}

// cuDNN is optional at run time as at build time: where libcudnn cannot be loaded, the direct kernels
// take every convolution, and stderr says so once (the strict mode throws instead, every time).
bool cudnn_loaded() {
  static const std::string error = [] {
    try {
      cudnn();
      return std::string();
    } catch (const Error& e) {
      return std::string(e.what());
    }
  }();
  if (error.empty()) return true;
  static std::once_flag said;
  cudnn_fallback(error);  // throws in strict mode
  std::call_once(said, [] { std::fprintf(stderr, "%s\n[cudnn] using Ember's direct convolution kernels instead\n", error.c_str()); });
  return false;
}

std::atomic<uint64_t> g_served{0};

std::mutex g_mu;
std::map<Key, std::unique_ptr<Plan>>& plans() {
  static auto* m = new std::map<Key, std::unique_ptr<Plan>>;  // never destroyed (outlives handles)
  return *m;
}

}  // namespace

bool cudnn_conv2d(ConvPass pass, const kernels::ConvGeom& g, const Tensor& x, const Tensor& w, const Tensor& y) {
  const DType dt = x.dtype();
  if (dt != DType::f32 && dt != DType::f64 && dt != DType::f16 && dt != DType::bf16) return false;
  if (env_flag("EMBER_DISABLE_CUDNN")) return false;  // read per call: tests switch it to check the direct kernels
  if (!cudnn_loaded()) return false;
  const int dev = x.device().index;
  cudnnHandle_t h = handle(dev);
  Plan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lk(g_mu);
    auto& slot = plans()[make_key(dev, dt, g)];
    if (!slot) {
      slot = std::make_unique<Plan>();
      build(*slot, dt, g);
    }
    if (!slot->supported) return false;  // a geometry cuDNN cannot express: the direct kernels' by design
    if (!slot->choice[static_cast<int>(pass)].tried) choose(*slot, pass, dt, h);
    plan = slot.get();
  }
  const int ip = static_cast<int>(pass);
  cudnnConvolutionDescriptor_t conv = plan->conv[ip];
  const float af = 1.0f, bf = 0.0f;
  const double ad = 1.0, bd = 0.0;
  // Scaling factors are float for f32, f16 and bf16 data, double for f64 (cuDNN's rule).
  const void* alpha = dt != DType::f64 ? static_cast<const void*>(&af) : static_cast<const void*>(&ad);
  const void* beta = dt != DType::f64 ? static_cast<const void*>(&bf) : static_cast<const void*>(&bd);
  for (;;) {
    Candidate k;
    {
      std::lock_guard<std::mutex> lk(g_mu);
      const Choice& c = plan->choice[ip];
      if (!c.ok()) {
        if (cudnn_strict())
          cudnn_fallback(str_cat("no cuDNN algorithm for ", pass_name(pass), " of this geometry: ",
                                 c.candidates.empty() ? c.why_none : "every ranked algorithm refused to run"));
        return false;
      }
      k = c.candidates[c.next];
    }
    Scratch ws(dev, k.workspace);
    cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
    const char* call = "";
    switch (pass) {
      case ConvPass::Forward:
        call = "cudnnConvolutionForward";
        st = cudnn().ConvolutionForward(h, alpha, plan->x, x.data_ptr(), plan->w, w.data_ptr(), conv,
                                        static_cast<cudnnConvolutionFwdAlgo_t>(k.algo), ws.get(), k.workspace, beta,
                                        plan->y, y.data_ptr());
        break;
      case ConvPass::BackwardData:
        call = "cudnnConvolutionBackwardData";
        st = cudnn().ConvolutionBackwardData(h, alpha, plan->w, w.data_ptr(), plan->y, y.data_ptr(), conv,
                                             static_cast<cudnnConvolutionBwdDataAlgo_t>(k.algo), ws.get(), k.workspace,
                                             beta, plan->x, x.data_ptr());
        break;
      case ConvPass::BackwardFilter:
        call = "cudnnConvolutionBackwardFilter";
        st = cudnn().ConvolutionBackwardFilter(h, alpha, plan->x, x.data_ptr(), plan->y, y.data_ptr(), conv,
                                               static_cast<cudnnConvolutionBwdFilterAlgo_t>(k.algo), ws.get(),
                                               k.workspace, beta, plan->w, w.data_ptr());
        break;
    }
    if (st == CUDNN_STATUS_SUCCESS) {
      g_served.fetch_add(1, std::memory_order_relaxed);
      return true;
    }
    if (st != CUDNN_STATUS_NOT_SUPPORTED && st != CUDNN_STATUS_BAD_PARAM) check_cudnn(st, call);
    // An algorithm the ranking offered that refuses to run: say so, and move this shape's pass on to
    // the next acceptable algorithm (with its math type), for this call and the later ones.
    std::lock_guard<std::mutex> lk(g_mu);
    Choice& c = plan->choice[ip];
    if (c.ok() && c.candidates[c.next].algo == k.algo) {
      ++c.next;
      std::fprintf(stderr, "[cudnn] %s refused algorithm %d (%s); %s\n", call, k.algo, cudnn().GetErrorString(st),
                   c.ok() ? "trying the next ranked one" : "no other algorithm is left for this shape");
      if (c.ok()) EMBER_CUDNN_CHECK(cudnn().SetConvolutionMathType(conv, c.candidates[c.next].math));
    }
  }
}

uint64_t cudnn_convolutions_served() { return g_served.load(std::memory_order_relaxed); }

}  // namespace ember::cu

#else  // no cuDNN in this build: conv.cu's direct kernels do all the work

namespace ember::cu {
bool cudnn_conv2d(ConvPass, const kernels::ConvGeom&, const Tensor&, const Tensor&, const Tensor&) { return false; }
uint64_t cudnn_convolutions_served() { return 0; }
}  // namespace ember::cu

#endif
