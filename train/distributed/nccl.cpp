// NCCL collectives (train/distributed/nccl.h).
#include "train/distributed/nccl.h"

#include "ember/runtime/error.h"

#if EMBER_DIST_WITH_NCCL
#include <dlfcn.h>
#include <mpi.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <type_traits>
#include <vector>

#include "ember/runtime/device.h"
#endif

namespace ember::dist::nccl {

#if EMBER_DIST_WITH_NCCL
namespace {

// The functions of libnccl that the collectives use, looked up by name.
struct Api {
  decltype(&::ncclGetUniqueId) GetUniqueId = nullptr;
  decltype(&::ncclCommInitRank) CommInitRank = nullptr;
  decltype(&::ncclAllReduce) AllReduce = nullptr;
  decltype(&::ncclBroadcast) Broadcast = nullptr;
  decltype(&::ncclGetErrorString) GetErrorString = nullptr;
  std::string error;  // why it could not be loaded ("" when loaded)
};

const Api& api() {
  static const Api a = [] {
    Api r;
    std::string tried;
    void* lib = nullptr;
    std::vector<std::string> names;
    if (const char* env = std::getenv("EMBER_NCCL_LIBRARY"); env && *env) names.push_back(env);
    names.push_back("libnccl.so.2");
    names.push_back("libnccl.so");
    for (const std::string& n : names) {
      lib = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (lib) break;
      const char* e = dlerror();
      tried += (tried.empty() ? "" : "; ") + n + ": " + (e ? e : "not found");
    }
    if (!lib) {
      r.error = "[dist] NCCL could not be loaded (" + tried +
                "): install NCCL (the CUDA toolkit's lib folder or the nvidia-nccl wheel) where the loader finds it, "
                "or set EMBER_NCCL_LIBRARY";
      return r;
    }
    auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
      if (!fn && r.error.empty()) r.error = std::string("[dist] libnccl has no ") + name;
    };
    get(r.GetUniqueId, "ncclGetUniqueId");
    get(r.CommInitRank, "ncclCommInitRank");
    get(r.AllReduce, "ncclAllReduce");
    get(r.Broadcast, "ncclBroadcast");
    get(r.GetErrorString, "ncclGetErrorString");
    return r;
  }();
  if (!a.error.empty()) throw Error(a.error);
  return a;
}

void check(ncclResult_t r, const char* call) {
  if (r != ncclSuccess) EMBER_THROW("[dist] ", call, " failed: ", api().GetErrorString(r));
}

std::mutex g_mu;
std::map<int, ncclComm_t>& comms() {
  static auto* m = new std::map<int, ncclComm_t>;  // kept to the end of the process
  return *m;
}

// The communicator of `device`, made on first use (a collective: every rank calls it together).
ncclComm_t comm_for(int device) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = comms().find(device);
  if (it != comms().end()) return it->second;
  const Api& a = api();
  ncclUniqueId id{};
  if (rank() == 0) check(a.GetUniqueId(&id), "ncclGetUniqueId");
  if (world_size() > 1) {
    const int rc = MPI_Bcast(&id, sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD);
    EMBER_CHECK(rc == MPI_SUCCESS, "[dist] MPI_Bcast of the NCCL unique id failed");
  }
  const int prev = ember::cuda_set_current_device(device);
  ncclComm_t c = nullptr;
  const ncclResult_t r = a.CommInitRank(&c, world_size(), id, rank());
  ember::cuda_set_current_device(prev);
  check(r, "ncclCommInitRank");
  comms()[device] = c;
  return c;
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::f16: return ncclFloat16;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
    case DType::u8:
    case DType::b8: return ncclUint8;
  }
  EMBER_THROW("[dist] unexpected dtype");
}

}  // namespace

std::string unavailable_reason() {
  try {
    api();
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

void all_reduce(const Tensor& t, ReduceOp op) {
  const int dev = t.device().index;
  ncclComm_t c = comm_for(dev);
  ncclRedOp_t nop = op == ReduceOp::Max ? ncclMax : op == ReduceOp::Mean ? ncclAvg : ncclSum;
  if (t.dtype() == DType::b8) nop = ncclMax;  // "any", as on the CPU
  const int prev = ember::cuda_set_current_device(dev);
  const ncclResult_t r = api().AllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                                         nop, c, static_cast<cudaStream_t>(ember::cuda_current_stream(t.device())));
  ember::cuda_set_current_device(prev);
  check(r, "ncclAllReduce");
}

void broadcast(const Tensor& t, int root) {
  const int dev = t.device().index;
  ncclComm_t c = comm_for(dev);
  const int prev = ember::cuda_set_current_device(dev);
  const ncclResult_t r = api().Broadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t.dtype()),
                                         root, c, static_cast<cudaStream_t>(ember::cuda_current_stream(t.device())));
  ember::cuda_set_current_device(prev);
  check(r, "ncclBroadcast");
}

#else

std::string unavailable_reason() {
  return "this build of Ember::distributed has no NCCL (a CUDA build with nccl.h found at configure time has)";
}
void all_reduce(const Tensor&, ReduceOp) { throw Error("[dist] CUDA tensors need NCCL: " + unavailable_reason()); }
void broadcast(const Tensor&, int) { throw Error("[dist] CUDA tensors need NCCL: " + unavailable_reason()); }

#endif

}  // namespace ember::dist::nccl
