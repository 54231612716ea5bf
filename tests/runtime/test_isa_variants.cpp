// The kernels compiled for several ISAs (kernels/cpu/isa.h: the fused optimizer updates, long sums,
// the MSE forward, f32 exp/sigmoid, MNIST pixel conversion, f32 <-> f16/bf16 casts) give the same
// bits in every variant. The bf16 GEMM's native and widened paths agree within rounding instead
// (tests/runtime/test_gemm_lowp.cpp, tests/amp/).
// The cap lowers the ISA on this machine, so the AVX2 and baseline variants run here too.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/isa.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "ember/train/data/mnist.h"
#include "ember/train/optim.h"

namespace ember {
namespace {

using kernels::CpuIsa;

class IsaCap {
 public:
  explicit IsaCap(CpuIsa cap) { kernels::set_cpu_isa_cap(cap); }
  ~IsaCap() { kernels::set_cpu_isa_cap(CpuIsa::Avx512); }
};

// Everything the variants compute, from fixed inputs.
std::vector<Tensor> run_kernels() {
  std::vector<Tensor> out;
  Generator g(21);
  Tensor x = mul(randn({3, 70000}, {}, &g), 20.0), y = randn({3, 70000}, {}, &g);
  out.push_back(sum(x));
  out.push_back(sum(x.reshape({3, 7, 10000}), {0, 2}));
  out.push_back(exp(x));
  out.push_back(sigmoid(x));
  Tensor xr = x.detach().requires_grad_();
  Tensor loss = mse_loss(xr, y);
  loss.backward();
  out.push_back(loss.detach());
  out.push_back(xr.grad());
  // The fused optimizer updates, three steps each: Adam, AdamW, Adam with amsgrad + maximize + L2,
  // SGD plain and with Nesterov momentum + L2 + maximize, RMSprop plain and centered with momentum
  // + L2, Adagrad with lr decay + L2 + maximize.
  for (int variant = 0; variant < 8; ++variant) {
    Tensor p = randn({1000, 37}, {}, &g).requires_grad_();
    std::unique_ptr<optim::Optimizer> opt;
    optim::NamedParams params{{"p", p}};
    if (variant == 0) opt = std::make_unique<optim::Adam>(params, optim::AdamOptions{.lr = 1e-2});
    if (variant == 1) opt = std::make_unique<optim::AdamW>(params, optim::AdamWOptions{.lr = 1e-2});
    if (variant == 2)
      opt = std::make_unique<optim::Adam>(
          params, optim::AdamOptions{.lr = 1e-2, .weight_decay = 0.1, .amsgrad = true, .maximize = true});
    if (variant == 3) opt = std::make_unique<optim::SGD>(params, optim::SGDOptions{.lr = 1e-2});
    if (variant == 4)
      opt = std::make_unique<optim::SGD>(params, optim::SGDOptions{.lr = 1e-2, .momentum = 0.9, .weight_decay = 0.1,
                                                                   .nesterov = true, .maximize = true});
    if (variant == 5) opt = std::make_unique<optim::RMSprop>(params, optim::RMSpropOptions{.lr = 1e-2});
    if (variant == 6)
      opt = std::make_unique<optim::RMSprop>(
          params, optim::RMSpropOptions{.lr = 1e-2, .weight_decay = 0.1, .momentum = 0.5, .centered = true});
    if (variant == 7)
      opt = std::make_unique<optim::Adagrad>(
          params, optim::AdagradOptions{.lr = 1e-2, .lr_decay = 0.01, .weight_decay = 0.1, .maximize = true});
    for (int step = 0; step < 3; ++step) {
      opt->zero_grad();
      sum(mul(mul(p, p), p)).backward();
      opt->step();
    }
    out.push_back(p.detach());
  }
  // The casts of mixed precision (f32 <-> f16 through F16C under AVX-512, bf16 through the
  // vectorised bit operations): every f16 bit pattern widened, and f32 values (random, overflowing,
  // subnormal in f16, NaNs with payloads) rounded to f16 and bf16.
  static std::vector<uint16_t> all_f16(65536);
  for (size_t i = 0; i < all_f16.size(); ++i) all_f16[i] = static_cast<uint16_t>(i);
  out.push_back(from_blob(all_f16.data(), {65536}, DType::f16).to(DType::f32));
  static std::vector<uint32_t> f32_bits = {0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7fa12345u, 0x7f800000u, 0xff800000u,
                                           0x477ff000u, 0x477fefffu, 0x33800000u, 0x33000000u, 0x33000001u, 0x80000001u,
                                           0x387fc000u, 0x38800000u, 0u, 0x80000000u, 0x3f800000u, 0x3f801000u};
  Tensor rounded = cat({from_blob(f32_bits.data(), {static_cast<int64_t>(f32_bits.size())}, DType::f32),
                        mul(x.reshape({-1}), 1e-3)});
  out.push_back(rounded.to(DType::f16));
  out.push_back(rounded.to(DType::bf16));
  // The same specials in blocks of 32 without a subnormal (AVX512-BF16's instruction), then with one.
  std::vector<uint32_t> no_subnormal;
  for (uint32_t b : f32_bits)
    if (b != 0x80000001u) no_subnormal.push_back(b);
  Tensor specials = from_blob(no_subnormal.data(), {static_cast<int64_t>(no_subnormal.size())}, DType::f32);
  static std::vector<uint32_t> subnormals = {0x00400000u, 0x807fffffu, 0x00018000u, 0x00008000u};
  out.push_back(cat({specials, specials, mul(x.reshape({-1}), 1e-3), rounded,
                     from_blob(subnormals.data(), {4}, DType::f32), specials, specials})
                    .to(DType::bf16));
  std::vector<double> pixels(5 * 4 * 6);
  for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<double>((i * 37) % 256);
  data::MnistDataset ds(from_vector(pixels, {5, 4, 6}, DType::u8), from_vector(std::vector<int64_t>{1, 2, 3, 4, 5}, {5}),
                        data::ImageLayout::Flat);
  out.push_back(ds.images(0, 5));
  return out;
}

TEST(IsaVariants, EveryVariantGivesTheBaselineBits) {
  std::vector<Tensor> baseline;
  {
    IsaCap cap(CpuIsa::Baseline);
    baseline = run_kernels();
  }
  for (CpuIsa isa : {CpuIsa::Avx2, CpuIsa::Avx512}) {
    if (kernels::detected_cpu_isa() < isa) continue;
    IsaCap cap(isa);
    ASSERT_EQ(kernels::cpu_isa(), isa);
    std::vector<Tensor> got = run_kernels();
    ASSERT_EQ(got.size(), baseline.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_TRUE(test::bit_equal(got[i], baseline[i])) << "result " << i << " with ISA " << static_cast<int>(isa);
    }
  }
}

TEST(IsaVariants, TheCapNeverRaisesTheIsa) {
  IsaCap cap(CpuIsa::Baseline);
  EXPECT_EQ(kernels::cpu_isa(), CpuIsa::Baseline);
  kernels::set_cpu_isa_cap(CpuIsa::Avx512);
  EXPECT_EQ(kernels::cpu_isa(), kernels::detected_cpu_isa());
}

}  // namespace
}  // namespace ember
