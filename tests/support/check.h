// Test helpers: reference fixtures written by tests/reference/*.py, allclose, and a float64
// central-difference gradient check.
#pragma once
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ember/runtime/tensor.h"

namespace ember::test {

// A fixture file (text):
//   # comment
//   tensor NAME DTYPE RANK D0 D1 ...      followed by numel values (whitespace separated, may span lines;
//                                          nan/inf/-inf allowed; printed with 17 significant digits)
//   scalar NAME VALUE
struct Fixture {
  std::map<std::string, Tensor> tensors;
  std::map<std::string, double> scalars;
  const Tensor& operator[](const std::string& name) const;  // fails the test (throws) when missing
  double scalar(const std::string& name) const;
};
// path relative to tests/reference/ (e.g. "fixtures/losses.txt").
Fixture load_fixture(const std::string& relpath);

// |actual - expected| <= atol + rtol * |expected| elementwise, same shape; NaNs must match.
::testing::AssertionResult allclose(const Tensor& actual, const Tensor& expected, double rtol = 1e-5,
                                    double atol = 1e-6);
// Bitwise equality of dtype, shape and data.
::testing::AssertionResult bit_equal(const Tensor& a, const Tensor& b);

// Checks autograd gradients of f at inputs (f64 leaves; those with requires_grad are checked)
// against central differences of sum(f(inputs) * w) for a fixed random w.
::testing::AssertionResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     const std::vector<Tensor>& inputs, double eps = 1e-6, double atol = 1e-5,
                                     double rtol = 1e-4);

// --- additions (beyond the original declarations) ----------------------------------------------

// gradcheck whose failure message starts with `context` (e.g. the op's registry name and case).
::testing::AssertionResult gradcheck(const std::string& context,
                                     const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                     const std::vector<Tensor>& inputs, double eps = 1e-6, double atol = 1e-5,
                                     double rtol = 1e-4);

// Elements of t in row-major order as doubles, read through its strides (CPU copy first if needed).
// Uses no Ember kernels on the CPU, so tests can inspect tensors without trusting copy/convert.
std::vector<double> values_f64(const Tensor& t);

// A CPU tensor of `dtype` holding `values` (row-major), written element by element with the
// header-only conversions of runtime/dtype.h (no Ember kernels involved).
Tensor make_tensor(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f64,
                   bool requires_grad = false);

// "(i, j, k)" for flat row-major index `flat` in `shape`.
std::string index_str(const Shape& shape, int64_t flat);

// Absolute path of a file under tests/reference/.
std::string reference_path(const std::string& relpath);

// The message of the ember::Error that fn throws, or "no error" when it throws none.
std::string error_of(const std::function<void()>& fn);

// Parses fixture text (as load_fixture; `origin` names the source in error messages).
Fixture parse_fixture(const std::string& text, const std::string& origin);

}  // namespace ember::test
