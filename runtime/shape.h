// Shape and strides: a small inline vector of int64 (no heap), at most kMaxRank dimensions.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "ember/runtime/api.h"
#include "ember/runtime/error.h"
#include "ember/runtime/small_alloc.h"

namespace ember {

inline constexpr int kMaxRank = 8;

class EMBER_API Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) { assign(dims.begin(), dims.end()); }
  explicit Shape(const std::vector<int64_t>& dims) { assign(dims.begin(), dims.end()); }
  template <typename It>
  Shape(It first, It last) { assign(first, last); }

  int size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t operator[](int i) const { return d_[i]; }
  int64_t& operator[](int i) { return d_[i]; }
  const int64_t* begin() const { return d_; }
  const int64_t* end() const { return d_ + n_; }
  int64_t* begin() { return d_; }
  int64_t* end() { return d_ + n_; }
  int64_t back() const { return d_[n_ - 1]; }
  void push_back(int64_t v) {
    EMBER_CHECK(n_ < kMaxRank, "[shape] rank ", n_ + 1, " exceeds Ember's maximum rank ", kMaxRank);
    d_[n_++] = v;
  }
  void insert(int pos, int64_t v);
  void erase(int pos);
  void resize(int n, int64_t fill = 0);
  std::vector<int64_t> vec() const { return {begin(), end()}; }
  int64_t numel() const;  // product of dims (1 for rank 0)
  std::string str() const;  // "(2, 3)"; "()" for rank 0
  bool operator==(const Shape& o) const;
  bool operator!=(const Shape& o) const { return !(*this == o); }

 private:
  template <typename It>
  void assign(It first, It last) {
    n_ = 0;
    for (; first != last; ++first) push_back(static_cast<int64_t>(*first));
  }
  int64_t d_[kMaxRank] = {};
  int n_ = 0;
};

using Strides = Shape;

// Dims an op works on (sorted, wrapped), in a recycled block.
using DimList = PoolVector<int>;

// A non-owning list of int64 (dims): binds a braced list, a std::vector<int64_t> or a Shape
// without copying it to the heap. Only for parameters: it must not outlive its argument.
class IntList {
 public:
  IntList() = default;
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Winit-list-lifetime"  // by design: the list outlives the call
#endif
  IntList(std::initializer_list<int64_t> l) : p_(l.begin()), n_(l.size()) {}       // NOLINT
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
  IntList(const std::vector<int64_t>& v) : p_(v.data()), n_(v.size()) {}            // NOLINT
  IntList(const Shape& s) : p_(s.begin()), n_(static_cast<size_t>(s.size())) {}     // NOLINT
  const int64_t* begin() const { return p_; }
  const int64_t* end() const { return p_ + n_; }
  size_t size() const { return n_; }
  bool empty() const { return n_ == 0; }
  int64_t operator[](size_t i) const { return p_[i]; }

 private:
  const int64_t* p_ = nullptr;
  size_t n_ = 0;
};

// Contiguous (row-major) strides for a shape.
EMBER_API Strides contiguous_strides(const Shape& shape);
// Broadcast two shapes as NumPy/PyTorch; throws "[op] shapes ... cannot be broadcast".
EMBER_API Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Wraps a possibly negative dim into [0, rank); throws naming the op otherwise.
EMBER_API int wrap_dim(int64_t dim, int rank, const char* op);

}  // namespace ember
