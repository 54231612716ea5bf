// The MPI process group (train/distributed/process_group.h).
#include "ember/train/distributed/process_group.h"

#include <fcntl.h>
#include <mpi.h>
#include <sys/mman.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "ember/runtime/autograd.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"
#include "train/distributed/host_buffers.h"
#include "train/distributed/nccl.h"

namespace ember::dist {
namespace {

struct World {
  bool initialized = false;
  bool mpi = false;        // MPI_Init ran here (a world of one does not start MPI)
  bool finalized = false;
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
  MPI_Comm local = MPI_COMM_NULL;
  MPI_Op f16_sum = MPI_OP_NULL, f16_max = MPI_OP_NULL, bf16_sum = MPI_OP_NULL, bf16_max = MPI_OP_NULL;
};

World& world() {
  static World w;
  return w;
}

std::mutex g_init_mu;

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<size_t>(len));
}

void check(int code, const char* call) {
  if (code != MPI_SUCCESS) EMBER_THROW("[dist] ", call, " failed: ", mpi_error(code));
}

// f16 / bf16 reductions as MPI user operations: widen to f32, combine, round back.
template <typename Half, bool kMax>
void half_op(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const Half*>(in);
  auto* b = static_cast<Half*>(inout);
  for (int i = 0; i < *len; ++i) {
    const float x = static_cast<float>(a[i]), y = static_cast<float>(b[i]);
    if constexpr (kMax) b[i] = Half(x != x || x > y ? x : y);  // NaN wins, as torch.maximum
    else b[i] = Half(x + y);
  }
}

void require_init(const char* who) {
  EMBER_CHECK(world().initialized && !world().finalized, "[dist] ", who, " before ember::dist::init() (or after finalize())");
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::u8: return MPI_UINT8_T;
    case DType::b8: return MPI_C_BOOL;
    case DType::f16:
    case DType::bf16: return MPI_UINT16_T;
  }
  EMBER_THROW("[dist] unexpected dtype");
}

void check_tensor(const Tensor& t, const char* who) {
  EMBER_CHECK(t.defined(), "[dist] ", who, ": the tensor is undefined");
  EMBER_CHECK(t.is_contiguous(), "[dist] ", who, ": the tensor of shape ", t.shape().str(),
              " is not contiguous (collectives work in place on contiguous tensors)");
}

// CUDA tensors go through NCCL (also in a world of one, where it is a one-rank communicator);
// without NCCL a world of one leaves them as they are and a larger one refuses them.
bool via_nccl(const Tensor& t) {
  if (!t.device().is_cuda()) return false;
  if (world().size == 1 && !nccl::unavailable_reason().empty()) return false;
  return true;
}

// Large tensors go in pieces whose element count fits MPI's int.
template <typename Fn>
void in_chunks(const Tensor& t, Fn fn) {
  constexpr int64_t kMax = int64_t{1} << 30;
  auto* base = static_cast<char*>(t.data_ptr());
  const size_t esize = dtype_size(t.dtype());
  for (int64_t at = 0; at < t.numel(); at += kMax) {
    const int64_t n = std::min<int64_t>(kMax, t.numel() - at);
    fn(base + static_cast<size_t>(at) * esize, static_cast<int>(n));
  }
}

}  // namespace

bool launched() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MV2_COMM_WORLD_SIZE"})
    if (const char* s = std::getenv(v); s && *s) return true;
  return false;
}

void init() {
  std::lock_guard<std::mutex> lk(g_init_mu);
  World& w = world();
  if (w.initialized) return;
  if (!launched()) {
    w.initialized = true;  // a world of one: no MPI at all
    return;
  }
  int already = 0;
  check(MPI_Initialized(&already), "MPI_Initialized");
  if (!already) {
    int provided = 0;
    check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    w.mpi = true;
  }
  // Errors come back as codes (turned into ember::Error), not as an abort of the job.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  check(MPI_Comm_rank(MPI_COMM_WORLD, &w.rank), "MPI_Comm_rank");
  check(MPI_Comm_size(MPI_COMM_WORLD, &w.size), "MPI_Comm_size");
  check(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, w.rank, MPI_INFO_NULL, &w.local),
        "MPI_Comm_split_type");
  check(MPI_Comm_rank(w.local, &w.local_rank), "MPI_Comm_rank");
  check(MPI_Comm_size(w.local, &w.local_size), "MPI_Comm_size");
  check(MPI_Op_create(&half_op<Half, false>, 1, &w.f16_sum), "MPI_Op_create");
  check(MPI_Op_create(&half_op<Half, true>, 1, &w.f16_max), "MPI_Op_create");
  check(MPI_Op_create(&half_op<BFloat16, false>, 1, &w.bf16_sum), "MPI_Op_create");
  check(MPI_Op_create(&half_op<BFloat16, true>, 1, &w.bf16_max), "MPI_Op_create");
  w.initialized = true;
  std::atexit([] { finalize(); });
}

void finalize() {
  std::lock_guard<std::mutex> lk(g_init_mu);
  World& w = world();
  if (!w.initialized || w.finalized) return;
  w.finalized = true;
  if (!w.mpi) return;
  for (MPI_Op* op : {&w.f16_sum, &w.f16_max, &w.bf16_sum, &w.bf16_max})
    if (*op != MPI_OP_NULL) MPI_Op_free(op);
  if (w.local != MPI_COMM_NULL) MPI_Comm_free(&w.local);
  int done = 0;
  MPI_Finalized(&done);
  if (!done) MPI_Finalize();
}

bool initialized() { return world().initialized && !world().finalized; }
int rank() { return world().rank; }
int world_size() { return world().size; }
int local_rank() { return world().local_rank; }
int local_world_size() { return world().local_size; }
std::string backend() { return world().mpi ? "mpi" : "single"; }

void barrier() {
  require_init("barrier");
  if (world().size == 1) return;
  check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
}

void broadcast(const Tensor& t, int root) {
  require_init("broadcast");
  check_tensor(t, "broadcast");
  EMBER_CHECK(root >= 0 && root < world().size, "[dist] broadcast: root ", root, " is not a rank of a world of ",
              world().size);
  if (t.numel() == 0) return;
  if (via_nccl(t)) {
    nccl::broadcast(t, root);
    t.bump_version();
    return;
  }
  if (world().size == 1 || t.device().is_cuda()) return;
  const MPI_Datatype type = mpi_type(t.dtype());
  in_chunks(t, [&](void* p, int n) { check(MPI_Bcast(p, n, type, root, MPI_COMM_WORLD), "MPI_Bcast"); });
  t.bump_version();
}

struct Work::State {
  Tensor t;
  ReduceOp op = ReduceOp::Sum;
  std::vector<MPI_Request> requests;
  bool done = false;
};

namespace {

// Mean: the sum divided by the world size in the tensor's dtype (f16/bf16 divided in f32,
// rounded once).
void finish_mean(const Tensor& t) {
  NoGradGuard ng;
  const DType dt = t.dtype();
  Tensor out = t;  // the same storage
  if (dt == DType::f32 || dt == DType::f64) out.div_(full({}, static_cast<double>(world().size), TensorOptions(dt)));
  else out.copy_(div(t.to(DType::f32), static_cast<double>(world().size)));
}

// What an all-reduce of t sends through MPI.
struct MpiReduce {
  MPI_Op op = MPI_OP_NULL;
  MPI_Datatype type = MPI_DATATYPE_NULL;
};

// Checks the arguments and does the all-reduces that need no MPI call (nothing to reduce, a
// world of one, a CUDA tensor through NCCL); returns false then. Otherwise fills `m`.
bool start_all_reduce(const Tensor& t, ReduceOp op, MpiReduce& m) {
  require_init("all_reduce");
  check_tensor(t, "all_reduce");
  const DType dt = t.dtype();
  EMBER_CHECK(op != ReduceOp::Mean || is_floating(dt), "[dist] all_reduce: Mean needs a floating tensor, got ",
              dtype_name(dt));
  if (t.numel() == 0) return false;
  if (via_nccl(t)) {
    nccl::all_reduce(t, op);
    t.bump_version();
    return false;
  }
  if (world().size == 1 || t.device().is_cuda()) return false;
  const World& w = world();
  m.op = op == ReduceOp::Max ? MPI_MAX : MPI_SUM;
  if (dt == DType::b8) m.op = MPI_LOR;
  if (dt == DType::f16) m.op = op == ReduceOp::Max ? w.f16_max : w.f16_sum;
  if (dt == DType::bf16) m.op = op == ReduceOp::Max ? w.bf16_max : w.bf16_sum;
  m.type = mpi_type(dt);
  return true;
}

void finish(Work::State& s) {
  s.done = true;
  s.t.bump_version();
  if (s.op == ReduceOp::Mean) finish_mean(s.t);
}

}  // namespace

Work all_reduce_async(const Tensor& t, ReduceOp op) {
  MpiReduce m;
  if (!start_all_reduce(t, op, m)) return Work();
  Work work;
  auto state = std::make_shared<Work::State>();
  state->t = t;
  state->op = op;
  in_chunks(t, [&](void* p, int n) {
    MPI_Request r = MPI_REQUEST_NULL;
    check(MPI_Iallreduce(MPI_IN_PLACE, p, n, m.type, m.op, MPI_COMM_WORLD, &r), "MPI_Iallreduce");
    state->requests.push_back(r);
  });
  work.state_ = std::move(state);
  return work;
}

bool Work::test() {
  if (!state_ || state_->done) return true;
  int flag = 0;
  check(MPI_Testall(static_cast<int>(state_->requests.size()), state_->requests.data(), &flag, MPI_STATUSES_IGNORE),
        "MPI_Testall");
  if (flag) finish(*state_);
  return flag != 0;
}

void Work::wait() {
  if (!state_ || state_->done) return;
  check(MPI_Waitall(static_cast<int>(state_->requests.size()), state_->requests.data(), MPI_STATUSES_IGNORE),
        "MPI_Waitall");
  finish(*state_);
}

void all_reduce(const Tensor& t, ReduceOp op) {
  MpiReduce m;
  if (!start_all_reduce(t, op, m)) return;
  in_chunks(t, [&](void* p, int n) {
    check(MPI_Allreduce(MPI_IN_PLACE, p, n, m.type, m.op, MPI_COMM_WORLD), "MPI_Allreduce");
  });
  t.bump_version();
  if (op == ReduceOp::Mean) finish_mean(t);
}

void abort(const std::string& why, int code) {
  std::fprintf(stderr, "%s\n", why.c_str());
  std::fflush(stderr);
  if (world().mpi && !world().finalized) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

namespace detail {

std::unique_ptr<HostBuffers> HostBuffers::create(int64_t numel, DType dtype, std::string* why_not, bool* no_memory) {
  require_init("HostBuffers");
  if (no_memory) *no_memory = false;
  EMBER_CHECK(numel >= 0, "[dist] HostBuffers: negative size ", numel);
  const World& w = world();
  auto refuse = [&](const std::string& why) -> std::unique_ptr<HostBuffers> {
    if (why_not) *why_not = why;
    return nullptr;
  };
  // Decided from what every rank knows alike, so all return here together or go on together.
  if (w.size == 1) return refuse("a world of one");
  if (w.local_size != w.size) return refuse("the ranks are on more than one host");
  if (dtype != DType::f32 && dtype != DType::f64) return refuse(std::string("dtype ") + dtype_name(dtype));
  const size_t esize = dtype_size(dtype);
  const size_t page = 4096;
  const size_t segment = (std::max<size_t>(static_cast<size_t>(numel) * esize, 1) + page - 1) / page * page;
  const size_t total = segment * static_cast<size_t>(w.size);
  char name[64] = {};
  std::string error;
  int fd = -1;
  struct statvfs shm_fs {};
  if (w.local_rank == 0 && statvfs("/dev/shm", &shm_fs) == 0 &&
      static_cast<unsigned long long>(shm_fs.f_bavail) * shm_fs.f_frsize < total) {
    // Refused before anything is reserved (posix_fallocate on tmpfs would take pages first).
    error = "needs " + std::to_string(total) + " bytes of shared memory; /dev/shm has " +
            std::to_string(static_cast<unsigned long long>(shm_fs.f_bavail) * shm_fs.f_frsize) + " free";
  } else if (w.local_rank == 0) {
    // pid, a counter and a random tag: a name left by a crashed job whose pid came round again
    // cannot collide (O_EXCL would refuse it).
    static std::atomic<int> counter{0};
    const unsigned long long tag = (static_cast<unsigned long long>(std::random_device{}()) << 32) ^ std::random_device{}();
    std::snprintf(name, sizeof name, "/ember-dist-%ld-%d-%llx", static_cast<long>(getpid()), counter++, tag);
    fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
      error = std::string("shm_open: ") + std::strerror(errno);
    } else if (const int e = posix_fallocate(fd, 0, static_cast<off_t>(total)); e != 0) {
      error = "reserving " + std::to_string(total) + " bytes of shared memory: " + std::strerror(e);
      close(fd);
      shm_unlink(name);
      fd = -1;
    }
    if (fd < 0) name[0] = '\0';
  }
  check(MPI_Bcast(name, sizeof name, MPI_CHAR, 0, w.local), "MPI_Bcast");
  if (name[0] && w.local_rank != 0) {
    fd = shm_open(name, O_RDWR, 0);
    if (fd < 0) error = std::string("shm_open: ") + std::strerror(errno);
  }
  void* p = MAP_FAILED;
  if (fd >= 0) {
    p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) error = std::string("mmap: ") + std::strerror(errno);
    close(fd);
  }
  int ok = p != MAP_FAILED ? 1 : 0, all_ok = 0;
  check(MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD), "MPI_Allreduce");
  if (w.local_rank == 0 && name[0]) shm_unlink(name);  // every rank has opened it by now
  if (!all_ok) {
    if (p != MAP_FAILED) munmap(p, total);
    if (no_memory) *no_memory = true;
    return refuse(error.empty() ? "another rank could not map the shared memory" : error);
  }
  std::unique_ptr<HostBuffers> hb(new HostBuffers());
  // Every rank's buffer as a tensor, made once: each holds the mapping, so the all-reduce's ranges
  // are plain views of them (no tensor over raw memory made per call).
  const std::shared_ptr<void> mapping(p, [total](void* q) { munmap(q, total); });
  for (int s = 0; s < w.size; ++s)
    hb->segments_.push_back(from_blob(static_cast<char*>(p) + segment * static_cast<size_t>(s), {numel}, dtype,
                                      kCPU, [mapping](void*) {}));
  return hb;
}

HostBuffers::~HostBuffers() = default;

Tensor HostBuffers::mine() const { return segments_[static_cast<size_t>(world().rank)]; }

namespace {
// Every rank's stores before it are seen by every rank's loads after it.
void host_sync() {
  std::atomic_thread_fence(std::memory_order_seq_cst);
  check(MPI_Barrier(world().local), "MPI_Barrier");
  std::atomic_thread_fence(std::memory_order_seq_cst);
}
}  // namespace

void HostBuffers::all_reduce_sum(int64_t offset, int64_t n, double scale) {
  require_init("HostBuffers::all_reduce_sum");
  const int64_t size = mine().numel();
  EMBER_CHECK(offset >= 0 && n >= 0 && offset + n <= size, "[dist] HostBuffers::all_reduce_sum: range [", offset,
              ", ", offset + n, ") is outside a buffer of ", size, " elements");
  if (n == 0) return;
  NoGradGuard ng;
  const World& w = world();
  const int64_t align = 64 / static_cast<int64_t>(dtype_size(mine().dtype()));  // shares start on cache lines
  const int64_t share = ((n + w.size - 1) / w.size + align - 1) / align * align;
  auto range = [&](int s, int64_t at, int64_t len) { return segments_[static_cast<size_t>(s)].narrow(0, offset + at, len); };
  auto share_of = [&](int s) {
    const int64_t at = std::min(n, share * s);
    return std::pair<int64_t, int64_t>(at, std::min(n, at + share) - at);
  };
  host_sync();  // every rank's values are in place
  if (const auto [at, len] = share_of(w.rank); len > 0) {
    Tensor own = range(w.rank, at, len);
    for (int s = 0; s < w.size; ++s)
      if (s != w.rank) own.add_(range(s, at, len));
    if (scale != 1.0) own.mul_(scale);  // while the share is in the caches
  }
  host_sync();  // every share is summed
  for (int s = 0; s < w.size; ++s)
    if (const auto [at, len] = share_of(s); s != w.rank && len > 0) range(w.rank, at, len).copy_(range(s, at, len));
  host_sync();  // nobody reads this rank's buffer any more: it may be written again
  mine().bump_version();
}

}  // namespace detail

}  // namespace ember::dist
