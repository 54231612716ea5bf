// Datasets: indexable collections of examples, each a tuple of tensors (image, label, ...). A
// DataLoader stacks examples into batches through Dataset::get_batch, which TensorDataset
// implements with one memcpy per example and tensor (no per-example virtual calls).
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/tensor.h"

namespace ember::data {

// One example: a tuple of tensors, e.g. {image (1, 28, 28), label ()}.
using Example = std::vector<Tensor>;
// One batch: the examples' tensors stacked along a new leading dim, e.g. {(B, 1, 28, 28), (B)}.
using Batch = PoolVector<Tensor>;  // recycled storage: no malloc per batch
// Allocates a contiguous CPU tensor for one tensor of a batch (ordinary or pinned host memory).
using BatchAllocator = std::function<Tensor(const Shape&, DType)>;

// Allocates with ember::empty on the CPU (the caching allocator).
EMBER_API Tensor default_batch_alloc(const Shape& shape, DType dtype);

class EMBER_API Dataset {
 public:
  virtual ~Dataset() = default;
  // Number of examples.
  virtual int64_t size() const = 0;
  // Example `index` (0 <= index < size()). Must be safe to call from several threads at once.
  virtual Example get(int64_t index) const = 0;
  // The examples at `indices` stacked along a new leading dim into tensors made by `alloc`. The
  // default calls get() per index and copies; examples must agree in count, shapes and dtypes.
  virtual Batch get_batch(std::span<const int64_t> indices, const BatchAllocator& alloc) const;
};

// In-memory CPU tensors sharing their first dim (PyTorch's TensorDataset); example i is row i
// of each. Tensors are detached and made contiguous on construction.
class EMBER_API TensorDataset : public Dataset {
 public:
  // Throws when the list is empty, a tensor is rank 0, or the first dims differ.
  explicit TensorDataset(std::vector<Tensor> tensors);
  int64_t size() const override { return size_; }
  // Views of row `index` of each tensor (they share the dataset's memory).
  Example get(int64_t index) const override;
  // One memcpy per example and tensor.
  Batch get_batch(std::span<const int64_t> indices, const BatchAllocator& alloc) const override;
  // The tensors the dataset was built from (contiguous, CPU, detached).
  const std::vector<Tensor>& tensors() const { return tensors_; }

 private:
  std::vector<Tensor> tensors_;
  int64_t size_ = 0;
};

}  // namespace ember::data
