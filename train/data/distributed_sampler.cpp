// DistributedSampler and torch_randperm (see distributed_sampler.h), after PyTorch 1.13's
// torch/utils/data/distributed.py and ATen's randperm_cpu.
#include "ember/train/data/distributed_sampler.h"

#include <random>

#include "ember/runtime/error.h"

namespace ember::data {

std::vector<int64_t> torch_randperm(int64_t n, uint64_t seed) {
  EMBER_CHECK(n >= 0 && n < (int64_t{1} << 32), "[torch_randperm] n must be in [0, 2^32), got ", n);
  std::vector<int64_t> r(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) r[static_cast<size_t>(i)] = i;
  // at::mt19937 is the standard MT19937 seeded with the seed's low 32 bits; random() is one draw.
  std::mt19937 engine(static_cast<uint32_t>(seed & 0xffffffffu));
  for (int64_t i = 0; i + 1 < n; ++i) {
    const int64_t z = static_cast<int64_t>(static_cast<uint64_t>(engine()) % static_cast<uint64_t>(n - i));
    std::swap(r[static_cast<size_t>(i)], r[static_cast<size_t>(z + i)]);
  }
  return r;
}

DistributedSampler::DistributedSampler(int64_t dataset_size, DistributedSamplerOptions options)
    : size_(dataset_size), opts_(options) {
  EMBER_CHECK(dataset_size >= 0, "[DistributedSampler] the dataset size must be >= 0, got ", dataset_size);
  EMBER_CHECK(opts_.num_replicas >= 1, "[DistributedSampler] num_replicas must be >= 1, got ", opts_.num_replicas);
  EMBER_CHECK(opts_.rank >= 0 && opts_.rank < opts_.num_replicas, "[DistributedSampler] invalid rank ", opts_.rank,
              ", rank should be in the interval [0, ", opts_.num_replicas - 1, "]");
  const int64_t w = opts_.num_replicas;
  if (opts_.drop_last && size_ % w != 0) {
    // math.ceil((len - replicas) / replicas) with Python's true division: negative values round
    // towards zero (a dataset smaller than the world gives 0 samples).
    const int64_t d = size_ - w;
    num_samples_ = d >= 0 ? (d + w - 1) / w : -((-d) / w);
    if (num_samples_ < 0) num_samples_ = 0;
  } else {
    num_samples_ = (size_ + w - 1) / w;
  }
}

std::vector<int64_t> DistributedSampler::indices() const {
  std::vector<int64_t> all;
  if (opts_.shuffle) {
    all = torch_randperm(size_, opts_.seed + static_cast<uint64_t>(epoch_));
  } else {
    all.resize(static_cast<size_t>(size_));
    for (int64_t i = 0; i < size_; ++i) all[static_cast<size_t>(i)] = i;
  }
  const int64_t total = total_size();
  if (!opts_.drop_last) {
    // Pad by repeating the list from its start (several times when the padding is longer).
    const int64_t n = static_cast<int64_t>(all.size());
    for (int64_t i = 0; static_cast<int64_t>(all.size()) < total && n > 0; ++i) all.push_back(all[static_cast<size_t>(i % n)]);
  } else {
    all.resize(static_cast<size_t>(total));
  }
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(num_samples_));
  for (int64_t i = opts_.rank; i < total; i += opts_.num_replicas) out.push_back(all[static_cast<size_t>(i)]);
  return out;
}

Value DistributedSampler::state_dict() const {
  return Value(ValueMap{{"epoch", Value(epoch_)},
                        {"seed", Value(static_cast<int64_t>(opts_.seed))},
                        {"num_replicas", Value(opts_.num_replicas)},
                        {"rank", Value(opts_.rank)},
                        {"shuffle", Value(opts_.shuffle)},
                        {"drop_last", Value(opts_.drop_last)},
                        {"dataset_size", Value(size_)}});
}

void DistributedSampler::load_state_dict(const Value& state) {
  EMBER_CHECK(state.is_map(), "[DistributedSampler.load_state_dict] the state must be a map, got a ",
              Value::kind_name(state.kind()));
  auto get_int = [&](const char* key) {
    EMBER_CHECK(state.contains(key) && state.at(key).is_int(), "[DistributedSampler.load_state_dict] '", key,
                "' is missing or not an int");
    return state.at(key).as_int();
  };
  auto get_bool = [&](const char* key) {
    EMBER_CHECK(state.contains(key) && state.at(key).is_bool(), "[DistributedSampler.load_state_dict] '", key,
                "' is missing or not a bool");
    return state.at(key).as_bool();
  };
  const int64_t replicas = get_int("num_replicas");
  EMBER_CHECK(replicas == opts_.num_replicas, "[DistributedSampler.load_state_dict] the state was saved with ",
              replicas, " replicas but this sampler has ", opts_.num_replicas,
              ": the ranks' slices would not line up (resume at an epoch boundary instead)");
  EMBER_CHECK(get_int("dataset_size") == size_, "[DistributedSampler.load_state_dict] the state is for a dataset of ",
              get_int("dataset_size"), " samples, this one has ", size_);
  EMBER_CHECK(static_cast<uint64_t>(get_int("seed")) == opts_.seed && get_bool("shuffle") == opts_.shuffle &&
                  get_bool("drop_last") == opts_.drop_last,
              "[DistributedSampler.load_state_dict] seed, shuffle or drop_last differ from the saved state's");
  const int64_t epoch = get_int("epoch");
  EMBER_CHECK(epoch >= 0, "[DistributedSampler.load_state_dict] 'epoch' must be >= 0, got ", epoch);
  (void)get_int("rank");  // each rank restores its own position; the rank itself may differ
  epoch_ = epoch;
}

}  // namespace ember::data
