// DataLoader: batches from a Dataset in sequential or seeded-shuffled order, with drop_last,
// background prefetch (num_workers), pinned host memory for CUDA-bound batches, and a sampler
// state (epoch, generator state at the epoch's start, batches handed out) that resumes mid-epoch
// with exactly the remaining batches. One epoch per `for (auto& batch : loader)`.
//
// Epoch bookkeeping: a loop that runs to the end, or leaves early by `break`, ends the epoch; the
// next begin() draws a new permutation. A loop left by an exception keeps the epoch open, and so
// does load_state_dict() of a mid-epoch state: the next begin() continues where it stopped.
// "Handed out" counts a batch as soon as the iterator yields it (a state_dict() taken inside the
// loop body resumes at the following batch). A loader and its iterator are used from one thread;
// only the prefetch workers run elsewhere (they call Dataset::get_batch concurrently).
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/device.h"
#include "ember/runtime/value.h"
#include "ember/train/data/dataset.h"
#include "ember/train/data/distributed_sampler.h"

namespace ember::data {

struct DataLoaderOptions {
  int64_t batch_size = 1;
  bool shuffle = false;                // a new permutation per epoch, drawn with ember::randperm
  bool drop_last = false;              // drop the last batch when it is short
  std::optional<uint64_t> seed;        // seeds the sampler; default: drawn from default_generator()
  int num_workers = 0;                 // 0: batches gathered on the consumer's thread
  int prefetch_factor = 2;             // batches in flight per worker (num_workers > 0)
  Device device = kCPU;                // where the batches go next (the loader itself yields CPU batches)
  std::optional<bool> pin_memory;      // batches in pinned host memory (runtime/allocator.h); default: device.is_cuda()
  // Data-parallel reading: this loader yields only its rank's DistributedSampler slice of each
  // epoch (PyTorch's rules: every num_replicas-th index of the order, shuffled by the sampler's
  // seed + epoch, padded or cut to equal lengths), batched with batch_size and drop_last. The
  // sampler's shuffle replaces the loader's, which must then be false (as PyTorch refuses both).
  std::optional<DistributedSamplerOptions> distributed;
};

class EMBER_API DataLoader {
 public:
  struct Impl;
  struct Sentinel {};
  // A single-pass, move-only iterator over the batches of one epoch.
  class EMBER_API Iterator {
   public:
    Iterator(Iterator&& o) noexcept;
    Iterator& operator=(Iterator&&) = delete;
    Iterator(const Iterator&) = delete;
    ~Iterator();
    // The current batch (replaced by the next ++).
    Batch& operator*() { return batch_; }
    Batch* operator->() { return &batch_; }
    // Fetches the next batch; rethrows a worker's exception for that batch.
    Iterator& operator++();
    // True once the epoch is exhausted (or the iterator failed or was moved from).
    bool operator==(Sentinel) const { return done_; }
    // Index of the current batch within its epoch.
    int64_t batch_index() const { return index_; }

   private:
    friend class DataLoader;
    explicit Iterator(std::shared_ptr<Impl> impl);
    void fetch();
    // Detaches from the loader; end_epoch closes the epoch (a loop left early, not by an exception).
    void release(bool end_epoch);
    std::shared_ptr<Impl> impl_;
    Batch batch_;
    int64_t index_ = -1;
    bool done_ = false;
    int uncaught_ = 0;
  };

  // Throws on batch_size < 1, num_workers < 0, prefetch_factor < 1 or an empty dataset.
  DataLoader(std::shared_ptr<const Dataset> dataset, DataLoaderOptions options = {});
  // Stops and joins the prefetch workers, even mid-epoch.
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Starts (or, after an exception or a mid-epoch load_state_dict, continues) an epoch.
  // Throws while another iterator of this loader is live.
  Iterator begin();
  // The end marker of begin()'s iteration.
  Sentinel end() const { return {}; }
  // Number of batches per epoch.
  int64_t len() const;
  // Index of the current epoch (the next one when none is open); counts from 0.
  int64_t epoch() const;
  // Whether batches are gathered into pinned host memory.
  bool pin_memory() const;
  // The options it was built with, and its dataset.
  const DataLoaderOptions& options() const;
  const Dataset& dataset() const;
  std::shared_ptr<const Dataset> shared_dataset() const;

  // The sampler state: {"epoch", "batches_seen", "generator" (bytes: the state before this
  // epoch's permutation), "seed"} and the settings it depends on {"dataset_size", "batch_size",
  // "shuffle", "drop_last"}, and with `distributed` its settings under "distributed"
  // ({"num_replicas", "rank", "seed", "shuffle", "drop_last"}).
  Value state_dict() const;
  // Restores a state_dict(); throws (changing nothing) on missing or mistyped keys, settings that
  // differ from this loader's, or while an iterator is live. A distributed state may come from
  // another rank (ranks advance together), and from another world size only at an epoch boundary:
  // mid-epoch that is an error naming both sizes; at a boundary load_notice() says so.
  void load_state_dict(const Value& state);
  // What the last load_state_dict() accepted that the caller may want to tell the user ("" if
  // nothing): a change of world size at an epoch boundary.
  const std::string& load_notice() const;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace ember::data
