// DistributedSampler: the slice of a dataset's indices one rank of a data-parallel job reads in an
// epoch, by PyTorch's torch.utils.data.DistributedSampler rules, index for index: the indices in
// order, or (shuffle) torch.randperm(len) drawn from a CPU generator seeded with seed + epoch;
// without drop_last padded by repeating the head up to a multiple of num_replicas, with it cut
// down to one; then every num_replicas-th index starting at rank. All ranks agree on the
// permutation because it depends only on (seed, epoch), never on a rank's RNG.
//
//   data::DistributedSampler s(dataset.size(), {.num_replicas = world, .rank = rank, .seed = 42});
//   s.set_epoch(epoch);                       // before each epoch, as in PyTorch
//   for (int64_t i : s.indices()) ...        // num_samples() indices
#pragma once
#include <cstdint>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/value.h"

namespace ember::data {

// torch.randperm(n, generator=torch.Generator().manual_seed(seed)) on the CPU, bit for bit: a
// Fisher-Yates pass driven by the 32-bit outputs of MT19937 seeded with the low 32 bits of seed
// (PyTorch's CPU generator). n must be below 2^32.
EMBER_API std::vector<int64_t> torch_randperm(int64_t n, uint64_t seed);

struct DistributedSamplerOptions {
  int64_t num_replicas = 1;  // the world size
  int64_t rank = 0;          // in [0, num_replicas)
  bool shuffle = true;
  uint64_t seed = 0;         // must be the same on every rank
  bool drop_last = false;    // true: drop the tail instead of padding with repeated indices
};

class EMBER_API DistributedSampler {
 public:
  // Throws naming the option when num_replicas < 1, rank is outside [0, num_replicas), or
  // dataset_size < 0.
  DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options);

  void set_epoch(int64_t epoch) { epoch_ = epoch; }
  int64_t epoch() const { return epoch_; }
  // This rank's indices for the current epoch (num_samples() of them).
  std::vector<int64_t> indices() const;
  // Per rank: ceil(size / replicas), or with drop_last and an uneven size ceil((size - replicas) /
  // replicas) (PyTorch's formula).
  int64_t num_samples() const { return num_samples_; }
  int64_t total_size() const { return num_samples_ * opts_.num_replicas; }
  const DistributedSamplerOptions& options() const { return opts_; }

  // {"epoch", "seed", "num_replicas", "rank", "shuffle", "drop_last", "dataset_size"}.
  Value state_dict() const;
  // Restores the epoch; the other keys must match this sampler's settings (a different world size
  // is an error naming both sizes: the permutation slices would not line up).
  void load_state_dict(const Value& state);

 private:
  int64_t size_;
  DistributedSamplerOptions opts_;
  int64_t num_samples_ = 0;
  int64_t epoch_ = 0;
};

}  // namespace ember::data
