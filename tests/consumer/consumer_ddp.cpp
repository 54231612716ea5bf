// A consumer of Ember::distributed (find_package(Ember COMPONENTS distributed)): on every rank of
// the world it runs in (one without a launcher, N under mpirun), a mean all-reduce and the DDP
// gradient averaging of a linear layer whose input differs by rank, checked against the closed
// forms. Exits non-zero on a mismatch.
#include <ember/ember.h>
#include <ember/train/distributed/ddp.h>
#include <ember/train/distributed/process_group.h>

#include <cmath>
#include <cstdio>

int main() {
  using namespace ember;
  dist::init();
  const int r = dist::rank(), n = dist::world_size();
  const double mean = (n + 1) / 2.0;  // the mean of 1..n
  Tensor t = full({3}, r + 1.0);
  dist::all_reduce(t, dist::ReduceOp::Mean);
  bool ok = std::abs(t.to_vector<float>()[2] - mean) < 1e-6;

  manual_seed(static_cast<uint64_t>(r));  // other weights on every rank, until the broadcast
  nn::Linear layer(4, 2);
  dist::broadcast_module(layer);
  dist::GradReducer reducer(layer.parameters());
  reducer.prepare_for_backward();
  sum(layer.forward(full({1, 4}, r + 1.0))).backward();  // d/dW = the input, d/db = 1
  reducer.finish();
  ok = ok && std::abs(layer.weight.grad().to_vector<float>()[0] - mean) < 1e-6;
  ok = ok && std::abs(layer.bias.grad().to_vector<float>()[1] - 1.0) < 1e-6;
  std::printf("rank %d of %d: all-reduce and gradient averaging %s\n", r, n, ok ? "agree" : "DIFFER");
  return ok ? 0 : 1;
}
