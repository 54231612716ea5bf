// A steady-state training step allocates nothing: no operator new (tensor handles, storages,
// autograd nodes, closures, the backward pass's bookkeeping and the loader's batches come from
// recycled blocks) and no new memory in the caching tensor allocator. This binary replaces the
// global operator new to count calls, so it is a test area of its own.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>
#include <optional>

#include "ember/nn/nn.h"
#include "ember/runtime/allocator.h"
#include "ember/runtime/autocast.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/parallel.h"
#include "ember/runtime/rng.h"
#include "ember/train/data/dataloader.h"
#include "ember/train/data/dataset.h"
#include "ember/train/optim.h"

namespace {
std::atomic<uint64_t> g_news{0};

void* counted_new(std::size_t n) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* counted_new_aligned(std::size_t n, std::align_val_t a) {
  g_news.fetch_add(1, std::memory_order_relaxed);
  std::size_t al = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
// Out of line: were free() inlined into a delete expression, g++ (under TSan, say) would warn
// that it frees memory from operator new (-Wmismatched-new-delete), not seeing that the
// replacement operator new above allocates with malloc.
[[gnu::noinline]] void free_block(void* p) noexcept { std::free(p); }
}  // namespace

void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new(std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a); }
void* operator new[](std::size_t n, std::align_val_t a) { return counted_new_aligned(n, a); }
void operator delete(void* p) noexcept { free_block(p); }
void operator delete[](void* p) noexcept { free_block(p); }
void operator delete(void* p, std::size_t) noexcept { free_block(p); }
void operator delete[](void* p, std::size_t) noexcept { free_block(p); }
void operator delete(void* p, std::align_val_t) noexcept { free_block(p); }
void operator delete[](void* p, std::align_val_t) noexcept { free_block(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { free_block(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { free_block(p); }

namespace ember {
namespace {

struct Counts {
  uint64_t news, system_allocs;
};

Counts counts() { return {g_news.load(), allocator_stats(kCPU).system_allocs}; }

// Trains `net` on shuffled batches of 32 random images of `image_shape` with Adam and MSE (an
// autoencoder step, as the examples'), and returns the allocations made by steps 5..24. With amp,
// the forward pass and the loss run under AutocastGuard(*amp) (bf16-mixed or 16-mixed).
Counts steady_state_allocations(nn::Module& net, Shape image_shape, int threads,
                                std::optional<DType> amp = std::nullopt) {
  set_num_threads(threads);
  Generator g(5);
  image_shape.insert(0, 32 * 30);
  Tensor images = rand(image_shape, {}, &g);
  data::DataLoader loader(std::make_shared<data::TensorDataset>(std::vector<Tensor>{images}),
                          {.batch_size = 32, .shuffle = true, .seed = 1});
  optim::Adam opt(net.named_parameters(), optim::AdamOptions{.lr = 1e-3});
  Counts before{}, after{};
  int step = 0;
  for (auto it = loader.begin(); it != loader.end(); ++it, ++step) {
    if (step == 5) before = counts();
    const Tensor& x = (*it)[0];
    opt.zero_grad();
    Tensor loss;
    {
      std::optional<AutocastGuard> autocast;
      if (amp) autocast.emplace(*amp);
      loss = mse_loss(net.forward(x), x);
    }
    loss.backward();
    opt.step();
    if (step == 24) after = counts();
  }
  return {after.news - before.news, after.system_allocs - before.system_allocs};
}

std::shared_ptr<nn::Sequential> autoencoder() {
  manual_seed(3);
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Linear>(784, 128));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::Linear>(128, 8));
  net->push_back(std::make_shared<nn::Tanh>());
  net->push_back(std::make_shared<nn::Linear>(8, 128));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::Linear>(128, 784));
  net->push_back(std::make_shared<nn::Sigmoid>());
  return net;
}

std::shared_ptr<nn::Sequential> conv_autoencoder() {
  manual_seed(4);
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Conv2d>(1, 8, 3, 2, 1));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::Conv2d>(8, 16, 3, 2, 1));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::ConvTranspose2d>(16, 8, 3, 2, 1, 1));
  net->push_back(std::make_shared<nn::ReLU>());
  net->push_back(std::make_shared<nn::ConvTranspose2d>(8, 1, 3, 2, 1, 1));
  net->push_back(std::make_shared<nn::Sigmoid>());
  return net;
}

TEST(ZeroAlloc, SteadyStateTrainingStepAllocatesNothing) {
  const int prev = get_num_threads();
  for (int threads : {1, 2}) {
    auto net = autoencoder();
    Counts c = steady_state_allocations(*net, {784}, threads);
    EXPECT_EQ(c.news, 0u) << "operator new calls in 20 steps with " << threads << " threads";
    EXPECT_EQ(c.system_allocs, 0u) << "tensor memory from the system in 20 steps with " << threads << " threads";
  }
  set_num_threads(prev);
}

TEST(ZeroAlloc, SteadyStateConvolutionStepAllocatesNothing) {
  const int prev = get_num_threads();
  for (int threads : {1, 2}) {
    auto net = conv_autoencoder();
    Counts c = steady_state_allocations(*net, {1, 28, 28}, threads);
    EXPECT_EQ(c.news, 0u) << "operator new calls in 20 steps with " << threads << " threads";
    EXPECT_EQ(c.system_allocs, 0u) << "tensor memory from the system in 20 steps with " << threads << " threads";
  }
  set_num_threads(prev);
}

// Mixed precision keeps the f32 step's property: half activations come from the caching allocator,
// the GEMM and autocast's cast cache reuse what they grew.
TEST(ZeroAlloc, SteadyStateMixedPrecisionStepsAllocateNothing) {
  const int prev = get_num_threads();
  for (DType amp : {DType::bf16, DType::f16}) {
    for (int threads : {1, 2}) {
      auto net = autoencoder();
      Counts c = steady_state_allocations(*net, {784}, threads, amp);
      EXPECT_EQ(c.news, 0u) << "operator new calls in 20 " << dtype_name(amp) << " steps with " << threads << " threads";
      EXPECT_EQ(c.system_allocs, 0u) << "tensor memory from the system in 20 " << dtype_name(amp) << " steps with "
                                     << threads << " threads";
      auto conv = conv_autoencoder();
      c = steady_state_allocations(*conv, {1, 28, 28}, threads, amp);
      EXPECT_EQ(c.news, 0u) << "operator new calls in 20 " << dtype_name(amp) << " conv steps with " << threads
                            << " threads";
      EXPECT_EQ(c.system_allocs, 0u) << "tensor memory from the system in 20 " << dtype_name(amp)
                                     << " conv steps with " << threads << " threads";
    }
  }
  set_num_threads(prev);
}

TEST(ZeroAlloc, TheCounterSeesAllocations) {
  // The replacement operator new is what the library calls: a fresh std::vector is counted.
  uint64_t before = g_news.load();
  auto* v = new std::vector<int>(1000);
  EXPECT_GT(g_news.load(), before);
  delete v;
}

}  // namespace
}  // namespace ember
