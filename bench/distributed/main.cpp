// ember_bench_ddp: training throughput of one of the examples' autoencoders (mlp or conv) with
// data-parallel gradient averaging (train/distributed/ddp.h): each rank trains on batches of
// --batch samples (synthetic pixels), one thread per rank, Adam; the gradients are averaged
// across ranks, each bucket's all-reduce started from gradient hooks during backward (--overlap 1,
// the default) or all of them after backward (--overlap 0, what the Trainer does on the CPU). Run
// it alone (a world of one) or under mpirun; rank 0 prints "RESULT <model> <ranks> <samples/s over all ranks>
// <ms/step waiting for all-reduces after backward> <bytes/step> <overlap>".
// With --allreduce-mb X it times a plain all-reduce (mean) of X MB of f32 instead and prints
// "ALLREDUCE <ranks> <bytes> <ms>", the bandwidth point of the cost model (docs/distributed.md).
//   usage: ember_bench_ddp [--model mlp|conv] [--steps N] [--warmup N] [--batch N] [--threads N]
//                          [--overlap 0|1] [--bucket-kb X] [--allreduce-mb X]
// (--bucket-kb X: every bucket's cap, the first's too; default PyTorch's 1 MB first, 25 MB others)
#include <chrono>
#include <cstdio>
#include <cstdlib>
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
    else if (a == "--bucket-kb") bucket_options.bucket_bytes = bucket_options.first_bucket_bytes =
                                     static_cast<size_t>(std::atof(value().c_str()) * 1024);
    else {
      std::fprintf(stderr, "usage: ember_bench_ddp [--model mlp|conv] [--steps N] [--warmup N] [--batch N] [--threads N] "
                           "[--overlap 0|1] [--bucket-kb X] [--allreduce-mb X]\n");
      return 2;
    }
  }
  try {
    dist::init();
    set_num_threads(threads);
    if (allreduce_mb > 0) {
      Tensor buf = ones({static_cast<int64_t>(allreduce_mb * 1e6 / 4)});
      for (int i = 0; i < 3; ++i) dist::all_reduce(buf, dist::ReduceOp::Mean);
      dist::barrier();
      const int reps = 20;
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < reps; ++i) dist::all_reduce(buf, dist::ReduceOp::Mean);
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (dist::rank() == 0)
        std::printf("ALLREDUCE %d %lld %.3f\n", dist::world_size(), static_cast<long long>(buf.nbytes()), 1e3 * dt / reps);
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
      if (overlap) reducer.prepare_for_backward();
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
      std::printf("RESULT %s %d %.1f %.3f %lld %d\n", model_name.c_str(), dist::world_size(),
                  static_cast<double>(steps) * static_cast<double>(batch) * dist::world_size() / dt,
                  1e3 * allreduce_s / steps, static_cast<long long>(bytes), overlap ? 1 : 0);
  } catch (const Error& e) {
    std::fprintf(stderr, "ember_bench_ddp: %s\n", e.what());
    return 1;
  }
  return 0;
}
