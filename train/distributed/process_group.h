// The processes of a data-parallel job and their collectives, on MPI: rank, world size, the rank
// on this host, barrier, broadcast and all-reduce (sum, mean, max) of tensors. Part of the
// separate library Ember::distributed (built when MPI is found; the core library never links MPI;
// find_package(Ember COMPONENTS distributed) gives it to other projects).
//
// Started by `mpirun -np N prog` (on one host or several), every process of the launcher's world
// takes part; started without a launcher, the process is a world of one and every collective
// returns its input. Collectives (all_reduce_async excepted) are blocking, called by every rank
// in the same order with tensors of the same dtype and size, from the thread that called init().
// CPU tensors go
// through MPI (every dtype: f16 and bf16 are summed in f32 and rounded once per step of MPI's
// reduction); CUDA tensors through NCCL (nccl.h: a CUDA build where nccl.h was found, libnccl
// opened at run time; one communicator per device, its id sent over MPI), queued on the device's
// current stream.
//
//   ember::dist::init();
//   ember::dist::all_reduce(grad, ember::dist::ReduceOp::Mean);
#pragma once
#include <memory>
#include <string>

#include "ember/runtime/tensor.h"

namespace ember::dist {

enum class ReduceOp { Sum, Mean, Max };

// Joins the launcher's world (MPI_Init_thread), or makes a world of one when the process was not
// started by an MPI launcher. Idempotent; the first call decides. Throws ember::Error with MPI's
// message when MPI cannot start.
void init();
// Leaves the world (MPI_Finalize); after it no collective may run. Also run at exit.
void finalize();
bool initialized();
// Whether this process runs under an MPI launcher (its environment says so).
bool launched();

int rank();
int world_size();
int local_rank();        // rank among the processes on this host
int local_world_size();  // processes on this host
std::string backend();   // "mpi" or "single" (a world of one)

void barrier();
// Every rank's t takes root's values (same dtype and shape on every rank; CPU, contiguous).
void broadcast(const Tensor& t, int root = 0);
// Every rank's t becomes the reduction over ranks, element by element. Mean: floating types only
// (the sum divided by world_size in the tensor's dtype, as PyTorch's AVG). Max on b8 is "any";
// Sum on b8 is "any" too (MPI's logical or), as in PyTorch's gloo backend.
void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::Sum);
// An all-reduce under way (all_reduce_async). MPI moves it forward inside MPI calls: test() gives it
// a turn and says whether it is done; wait() blocks until it is and finishes it (Mean's division).
// The tensor must stay untouched until wait() returns. A default Work is done.
class Work {
 public:
  Work() = default;
  bool test();
  void wait();
  struct State;

 private:
  friend Work all_reduce_async(const Tensor& t, ReduceOp op);
  std::shared_ptr<State> state_;
};
// all_reduce started without waiting for it; the same rules (every rank starts the same
// collectives in the same order). CUDA tensors are queued on the device's current stream, so
// the returned Work is done at once.
Work all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::Sum);

// Prints `why` on stderr and ends every rank of the job with `code` (MPI_Abort); in a world of
// one, ends this process.
[[noreturn]] void abort(const std::string& why, int code = 1);

}  // namespace ember::dist
