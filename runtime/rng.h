// Counter-based random numbers (Philox4x32-10). A Generator is (seed, offset): every draw of n
// values consumes ceil(n/4) counter blocks starting at offset, so values depend only on the seed
// and the order of draws, never on the thread count or device. The state is 16 bytes plus a
// header and can be saved and restored exactly (checkpoints store it).
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"

namespace ember {

class EMBER_API Generator {
 public:
  explicit Generator(uint64_t seed = 67280421310721ULL) : seed_(seed) {}
  void manual_seed(uint64_t seed) { seed_ = seed; offset_ = 0; }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  // Reserves the counter blocks for n values and returns the first block.
  uint64_t advance(uint64_t n_values) {
    uint64_t start = offset_;
    offset_ += (n_values + 3) / 4;
    return start;
  }
  uint32_t next_u32();  // one block per call (lane 0); for scalar host-side draws
  uint64_t next_u64();
  double next_double();  // uniform in [0, 1)

  // "EMRG" magic, format version, seed, offset: 24 bytes, little-endian.
  std::vector<uint8_t> get_state() const;
  void set_state(const std::vector<uint8_t>& state);  // throws naming what is wrong

 private:
  uint64_t seed_;
  uint64_t offset_ = 0;
};

// The process-wide default generator (used when a function gets no generator).
EMBER_API Generator& default_generator();
EMBER_API void manual_seed(uint64_t seed);

// One Philox4x32-10 block for a 64-bit counter under a 64-bit key.
EMBER_API std::array<uint32_t, 4> philox4x32(uint64_t counter, uint64_t key);

EMBER_API Tensor rand(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);   // U[0,1)
EMBER_API Tensor randn(const Shape& shape, TensorOptions opts = {}, Generator* gen = nullptr);  // N(0,1)
EMBER_API Tensor bernoulli(const Shape& shape, double p, TensorOptions opts = {}, Generator* gen = nullptr);
EMBER_API Tensor randperm(int64_t n, Generator* gen = nullptr);  // i64 on the CPU
// In place: x ~ U[lo, hi) / N(mean, std). Return x.
EMBER_API Tensor& uniform_(Tensor& x, double lo, double hi, Generator* gen = nullptr);
EMBER_API Tensor& normal_(Tensor& x, double mean, double std, Generator* gen = nullptr);

}  // namespace ember
