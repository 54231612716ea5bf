// Dataset::get_batch's generic stacking and TensorDataset's row gather.
#include "ember/train/data/dataset.h"

#include <cstring>

#include "ember/runtime/error.h"

namespace ember::data {
namespace {

Shape with_batch_dim(const Shape& s, int64_t n) {
  Shape out = s;
  out.insert(0, n);
  return out;
}

}  // namespace

Tensor default_batch_alloc(const Shape& shape, DType dtype) { return empty(shape, dtype); }

Batch Dataset::get_batch(std::span<const int64_t> indices, const BatchAllocator& alloc) const {
  EMBER_CHECK(!indices.empty(), "[Dataset::get_batch] no indices: a batch needs at least one example");
  const int64_t n = static_cast<int64_t>(indices.size());
  Example first = get(indices[0]);
  EMBER_CHECK(!first.empty(), "[Dataset::get_batch] example ", indices[0], " has no tensors");
  Batch out;
  std::vector<size_t> row_bytes;
  for (const Tensor& t : first) {
    EMBER_CHECK(t.defined(), "[Dataset::get_batch] example ", indices[0], " holds an undefined tensor");
    out.push_back(alloc(with_batch_dim(t.shape(), n), t.dtype()));
    row_bytes.push_back(t.nbytes());
  }
  for (int64_t k = 0; k < n; ++k) {
    Example ex = k == 0 ? std::move(first) : get(indices[k]);
    EMBER_CHECK(ex.size() == out.size(), "[Dataset::get_batch] example ", indices[k], " has ", ex.size(),
                " tensors, example ", indices[0], " has ", out.size());
    for (size_t f = 0; f < ex.size(); ++f) {
      const Tensor& t = ex[f];
      EMBER_CHECK(t.defined() && t.dtype() == out[f].dtype() &&
                      with_batch_dim(t.shape(), n) == out[f].shape(),
                  "[Dataset::get_batch] tensor ", f, " of example ", indices[k], " is ",
                  t.defined() ? str_cat(dtype_name(t.dtype()), " ", t.shape().str()) : std::string("undefined"),
                  ", but in example ", indices[0], " it is ", dtype_name(out[f].dtype()), " ",
                  Shape(out[f].shape().begin() + 1, out[f].shape().end()).str());
      Tensor src = t.detach().to(kCPU).contiguous();
      std::memcpy(static_cast<char*>(out[f].data_ptr()) + static_cast<size_t>(k) * row_bytes[f], src.data_ptr(),
                  row_bytes[f]);
    }
  }
  return out;
}

TensorDataset::TensorDataset(std::vector<Tensor> tensors) {
  EMBER_CHECK(!tensors.empty(), "[TensorDataset] needs at least one tensor");
  for (size_t i = 0; i < tensors.size(); ++i) {
    EMBER_CHECK(tensors[i].defined(), "[TensorDataset] tensor ", i, " is undefined");
    EMBER_CHECK(tensors[i].dim() >= 1, "[TensorDataset] tensor ", i, " is a scalar; every tensor needs a first dim");
    EMBER_CHECK(tensors[i].size(0) == tensors[0].size(0), "[TensorDataset] tensor ", i, " has shape ",
                tensors[i].shape().str(), ", tensor 0 has shape ", tensors[0].shape().str(),
                ": the first dims must be equal");
    tensors_.push_back(tensors[i].detach().to(kCPU).contiguous());
  }
  size_ = tensors_[0].size(0);
}

Example TensorDataset::get(int64_t index) const {
  EMBER_CHECK(index >= 0 && index < size_, "[TensorDataset] index ", index, " is out of range for ", size_,
              " examples");
  Example ex;
  for (const Tensor& t : tensors_) ex.push_back(t.select(0, index));
  return ex;
}

Batch TensorDataset::get_batch(std::span<const int64_t> indices, const BatchAllocator& alloc) const {
  const int64_t n = static_cast<int64_t>(indices.size());
  for (int64_t i : indices)
    EMBER_CHECK(i >= 0 && i < size_, "[TensorDataset] index ", i, " is out of range for ", size_, " examples");
  Batch out;
  for (const Tensor& t : tensors_) {
    Tensor dst = alloc(with_batch_dim(Shape(t.shape().begin() + 1, t.shape().end()), n), t.dtype());
    const size_t row = static_cast<size_t>(t.numel() / std::max<int64_t>(size_, 1)) * t.element_size();
    const char* src = static_cast<const char*>(t.data_ptr());
    char* d = static_cast<char*>(dst.data_ptr());
    for (int64_t k = 0; k < n; ++k) std::memcpy(d + k * row, src + indices[k] * row, row);
    out.push_back(std::move(dst));
  }
  return out;
}

}  // namespace ember::data
