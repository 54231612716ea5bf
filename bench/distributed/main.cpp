// ember_bench_ddp: training throughput of one of the examples' autoencoders (mlp or conv) with
// data-parallel gradient averaging (train/distributed/ddp.h): each rank trains on batches of
// --batch samples (synthetic pixels), one thread per rank, Adam; the gradients are averaged
// across ranks, each bucket's all-reduce started from gradient hooks during backward (--overlap 1,
// the default) or all of them after backward (--overlap 0, what the Trainer does on the CPU), in
// host-shared memory where the ranks share a host (--shm 1, the default) or through MPI (--shm 0).
// Run it alone (a world of one) or under mpirun; rank 0 prints "RESULT <model> <ranks> <samples/s
// over all ranks> <ms/step waiting for all-reduces after backward> <bytes/step> <overlap> <shm>".
// With --allreduce-mb X it times a plain all-reduce (mean) of X MB of f32 instead and prints
// "ALLREDUCE <ranks> <bytes> <ms> <mpi|host-shared>", the bandwidth point of the cost model
// (docs/distributed.md); --shm 0 times MPI_Allreduce, else host-shared buffers where they work.
//   usage: ember_bench_ddp [--model mlp|conv] [--steps N] [--warmup N] [--batch N] [--threads N]
//                          [--overlap 0|1] [--shm 0|1] [--bucket-kb X] [--allreduce-mb X]
// (--bucket-kb X: every bucket's cap, the first's too; default PyTorch's 1 MB first, 25 MB others)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "examples/common/models.h"
#include "ember/runtime/error.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "ember/train/optim.h"
#include "ember/train/distributed/ddp.h"
#include "ember/train/distributed/process_group.h"
#include "train/distributed/host_buffers.h"

using namespace ember;

int main(int argc, char** argv) {
  std::string model_name = "mlp";
  int steps = 60, warmup = 10, threads = 1;
  int64_t batch = -1;
  double allreduce_mb = 0;
  bool overlap = true;
  dist::GradReducerOptions bucket_options;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--model") model_name = value();
    else if (a == "--steps") steps = std::atoi(value().c_str());
    else if (a == "--warmup") warmup = std::atoi(value().c_str());
    else if (a == "--batch") batch = std::atoll(value().c_str());
    else if (a == "--threads") threads = std::atoi(value().c_str());
    else if (a == "--allreduce-mb") allreduce_mb = std::atof(value().c_str());
    else if (a == "--overlap") overlap = std::atoi(value().c_str()) != 0;  // 1: Overlap::On, 0: after backward
    else if (a == "--shm") bucket_options.host_shared_memory = std::atoi(value().c_str()) != 0;
    else if (a == "--bucket-kb") bucket_options.bucket_bytes = bucket_options.first_bucket_bytes =
                                     static_cast<size_t>(std::atof(value().c_str()) * 1024);
    else {
      std::fprintf(stderr, "usage: ember_bench_ddp [--model mlp|conv] [--steps N] [--warmup N] [--batch N] [--threads N] "
                           "[--overlap 0|1] [--shm 0|1] [--bucket-kb X] [--allreduce-mb X]\n");
      return 2;
    }
  }
  try {
    dist::init();
    set_num_threads(threads);
    if (allreduce_mb > 0) {
      const auto n = static_cast<int64_t>(allreduce_mb * 1e6 / 4);
      std::unique_ptr<dist::detail::HostBuffers> host;
      if (bucket_options.host_shared_memory) host = dist::detail::HostBuffers::create(n, DType::f32, nullptr);
      Tensor buf = host ? host->mine() : empty({n});
      buf.fill_(1.0);
      auto once = [&] {
        if (host) host->all_reduce_sum(0, n, 1.0 / dist::world_size());
        else dist::all_reduce(buf, dist::ReduceOp::Mean);
      };
      for (int i = 0; i < 3; ++i) once();
      dist::barrier();
      const int reps = 20;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) once();
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (dist::rank() == 0)
        std::printf("ALLREDUCE %d %lld %.3f %s\n", dist::world_size(), static_cast<long long>(buf.nbytes()),
                    1e3 * dt / reps, host ? "host-shared" : "mpi");
      return 0;
    }
    if (batch < 0) batch = examples::default_batch_size(model_name);
    manual_seed(0);
    examples::AutoEncoder model(model_name);
    dist::broadcast_module(model);
    optim::Adam opt(model.named_parameters(), optim::AdamOptions{.lr = 1e-3});
    bucket_options.overlap = overlap ? dist::Overlap::On : dist::Overlap::Off;
    dist::GradReducer reducer(model.parameters(), bucket_options);
    const Shape shape = examples::model_layout(model_name) == data::ImageLayout::Flat ? Shape{batch, 784}
                                                                                         : Shape{batch, 1, 28, 28};
    Generator g(1 + static_cast<uint64_t>(dist::rank()));
    std::vector<Tensor> data;
    for (int i = 0; i < 8; ++i) data.push_back(rand(shape, {}, &g));
    double allreduce_s = 0;
    int64_t bytes = 0;
    auto step = [&](int i) {
      const Tensor& x = data[static_cast<size_t>(i) % data.size()];
      opt.zero_grad();
      Tensor loss = mse_loss(model.forward(x), x);
      reducer.prepare_for_backward();  // as the Trainer: the hooks move gradients into the buckets
      loss.backward();
      reducer.finish();
      allreduce_s += reducer.last_allreduce_seconds();
      bytes = reducer.last_bytes();
      opt.step();
    };
    for (int i = 0; i < warmup; ++i) step(i);
    dist::barrier();
    allreduce_s = 0;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step(i);
    dist::barrier();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dist::rank() == 0)
      std::printf("RESULT %s %d %.1f %.3f %lld %d %d\n", model_name.c_str(), dist::world_size(),
                  static_cast<double>(steps) * static_cast<double>(batch) * dist::world_size() / dt,
                  1e3 * allreduce_s / steps, static_cast<long long>(bytes), overlap ? 1 : 0,
                  reducer.uses_host_shared_memory() ? 1 : 0);
  } catch (const Error& e) {
    std::fprintf(stderr, "ember_bench_ddp: %s\n", e.what());
    return 1;
  }
  return 0;
}
