// The default generator and the random tensor factories, on Philox4x32-10 (kernels/common/philox.h,
// the same block the random kernels use).
#include "ember/runtime/rng.h"

#include <cmath>
#include <cstring>
#include <mutex>

#include "kernels/common/philox.h"
#include "ember/runtime/autograd.h"
#include "runtime/dispatch.h"

namespace ember {

std::array<uint32_t, 4> philox4x32(uint64_t counter, uint64_t key) {
  std::array<uint32_t, 4> r;
  kernels::philox4x32(counter, key, r.data());
  return r;
}

uint32_t Generator::next_u32() { return philox4x32(advance(4), seed_)[0]; }

uint64_t Generator::next_u64() {
  auto r = philox4x32(advance(4), seed_);
  return (static_cast<uint64_t>(r[1]) << 32) | r[0];
}

double Generator::next_double() { return static_cast<double>(next_u64() >> 11) * 0x1p-53; }

namespace {
constexpr uint8_t kStateMagic[4] = {'E', 'M', 'R', 'G'};
constexpr uint32_t kStateVersion = 1;
constexpr size_t kStateSize = 24;

void put_u64(std::vector<uint8_t>& out, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_u64(const std::vector<uint8_t>& in, size_t at) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(in[at + i]) << (8 * i);
  return v;
}
}  // namespace

std::vector<uint8_t> Generator::get_state() const {
  std::vector<uint8_t> s(kStateSize, 0);
  std::memcpy(s.data(), kStateMagic, 4);
  for (int i = 0; i < 4; ++i) s[4 + i] = static_cast<uint8_t>(kStateVersion >> (8 * i));
  put_u64(s, 8, seed_);
  put_u64(s, 16, offset_);
  return s;
}

void Generator::set_state(const std::vector<uint8_t>& s) {
  EMBER_CHECK(s.size() == kStateSize, "[Generator::set_state] state has ", s.size(), " bytes (expected ", kStateSize,
              ")");
  EMBER_CHECK(std::memcmp(s.data(), kStateMagic, 4) == 0, "[Generator::set_state] state does not start with 'EMRG'");
  uint32_t version = s[4] | (s[5] << 8) | (s[6] << 16) | (static_cast<uint32_t>(s[7]) << 24);
  EMBER_CHECK(version == kStateVersion, "[Generator::set_state] state version ", version, " is not supported (expected ",
              kStateVersion, ")");
  seed_ = get_u64(s, 8);
  offset_ = get_u64(s, 16);
}

Generator& default_generator() {
  static Generator g;
  return g;
}

void manual_seed(uint64_t seed) { default_generator().manual_seed(seed); }

namespace {
Tensor random_tensor(kernels::RandomDist dist, const Shape& shape, TensorOptions opts, Generator* gen, double a,
                     double b, const char* op) {
  EMBER_CHECK(is_compute_floating(opts.dtype), "[", op, "] dtype ", dtype_name(opts.dtype), " is not supported (expected f32 or f64)");
  bool rg = opts.requires_grad;
  opts.requires_grad = false;
  Tensor t = empty(shape, opts);
  Generator& g = gen ? *gen : default_generator();
  uint64_t start = g.advance(static_cast<uint64_t>(t.numel()));
  EMBER_DISPATCH(t.device(), random, dist, g.seed(), start, a, b, t);
  if (rg) t.requires_grad_(true);
  return t;
}

void fill_random(Tensor& x, kernels::RandomDist dist, double a, double b, Generator* gen, const char* op) {
  EMBER_CHECK(!(grad_enabled() && x.requires_grad()), "[", op, "] in-place fill of a tensor that requires grad; run under NoGradGuard");
  Tensor tmp = random_tensor(dist, x.shape(), TensorOptions(x.dtype()).with_device(x.device()), gen, a, b, op);
  x.copy_(tmp);
}
}  // namespace

Tensor rand(const Shape& shape, TensorOptions opts, Generator* gen) {
  return random_tensor(kernels::RandomDist::Uniform, shape, opts, gen, 0.0, 1.0, "rand");
}

Tensor randn(const Shape& shape, TensorOptions opts, Generator* gen) {
  return random_tensor(kernels::RandomDist::Normal, shape, opts, gen, 0.0, 1.0, "randn");
}

Tensor bernoulli(const Shape& shape, double p, TensorOptions opts, Generator* gen) {
  EMBER_CHECK(p >= 0.0 && p <= 1.0, "[bernoulli] probability ", p, " is outside [0, 1]");
  return random_tensor(kernels::RandomDist::Bernoulli, shape, opts, gen, p, 0.0, "bernoulli");
}

Tensor& uniform_(Tensor& x, double lo, double hi, Generator* gen) {
  EMBER_CHECK(lo <= hi, "[uniform_] lower bound ", lo, " is above upper bound ", hi);
  fill_random(x, kernels::RandomDist::Uniform, lo, hi, gen, "uniform_");
  return x;
}

Tensor& normal_(Tensor& x, double mean, double std, Generator* gen) {
  EMBER_CHECK(std >= 0.0, "[normal_] std must be >= 0, got ", std);
  fill_random(x, kernels::RandomDist::Normal, mean, std, gen, "normal_");
  return x;
}

Tensor randperm(int64_t n, Generator* gen) {
  EMBER_CHECK(n >= 0, "[randperm] n must be >= 0, got ", n);
  Generator& g = gen ? *gen : default_generator();
  Tensor t = empty({n}, DType::i64);
  int64_t* p = t.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) p[i] = i;
  if (n < 2) return t;
  // Fisher-Yates with one 64-bit draw per swap; draws come from one reserved counter range so
  // the generator advances by the same amount for the same n.
  uint64_t start = g.advance(static_cast<uint64_t>(n) * 4);
  for (int64_t i = n - 1; i > 0; --i) {
    auto r = philox4x32(start + static_cast<uint64_t>(i), g.seed());
    uint64_t u = (static_cast<uint64_t>(r[1]) << 32) | r[0];
    int64_t j = static_cast<int64_t>(u % static_cast<uint64_t>(i + 1));
    std::swap(p[i], p[j]);
  }
  return t;
}

}  // namespace ember
