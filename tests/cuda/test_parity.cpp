// CUDA-vs-CPU parity for every op of ember::op_registry(), forward and backward, in f32 and f64,
// on awkward shapes (odd sizes, vector tails, broadcasting, non-contiguous views, long
// reductions). Each case runs the same function on CPU and CUDA leaves holding the same values and
// compares the outputs and the gradients of sum(out * w) for a fixed random w. The Coverage test
// (which needs no GPU) fails listing any registry op without a case here; the parity tests skip
// without a device.
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "ember/runtime/autograd.h"
#include "ember/runtime/device.h"
#include "runtime/op_registry.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"
#include "tests/support/op_options.h"

namespace ember {
namespace {

using test::conv_opts;
using test::kReductions;
using test::pool_opts;
using test::reduction_name;

using Inputs = std::vector<Tensor>;
using Fn = std::function<Tensor(const Inputs&)>;

struct Case {
  std::string label;
  Fn f;
  Inputs inputs;       // CPU tensors; floating ones with requires_grad get gradients compared
  double tol = 1.0;    // multiplies the dtype's tolerances (summation-order-heavy ops use more)
  bool seeded = false; // reseed the default generator before each side (random ops)
};
using Cases = std::vector<Case>;
using Builder = std::function<Cases(DType)>;

// --- deterministic inputs (splitmix64) ---------------------------------------------------------

uint64_t g_seed = 0xC0DA5EEDULL;
double next_unit() {
  uint64_t z = (g_seed += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

std::vector<double> uniform(int64_t n, double lo, double hi) {
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = lo + (hi - lo) * next_unit();
  return v;
}

// U[lo, hi) leaf of dtype dt.
Tensor rnd(DType dt, const Shape& s, double lo = -1.0, double hi = 1.0) {
  return test::make_tensor(uniform(s.numel(), lo, hi), s, dt, true);
}
// Values at least `margin` away from each point (kinks of abs/relu/clamp, ties of l1).
Tensor avoid(DType dt, const Shape& s, const std::vector<double>& points, double margin = 0.05, double lo = -2.0,
             double hi = 2.0) {
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (double& x : v) {
    bool ok = false;
    while (!ok) {
      x = lo + (hi - lo) * next_unit();
      ok = true;
      for (double p : points) ok = ok && std::fabs(x - p) >= margin;
    }
  }
  return test::make_tensor(v, s, dt, true);
}
// A permutation of distinct values step apart (no ties for max and max pooling).
Tensor distinct(DType dt, const Shape& s, double step = 0.01) {
  const int64_t n = s.numel();
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = step * static_cast<double>(i - n / 2);
  for (int64_t i = n - 1; i > 0; --i)
    std::swap(v[static_cast<size_t>(i)], v[static_cast<size_t>(next_unit() * static_cast<double>(i + 1))]);
  return test::make_tensor(v, s, dt, true);
}
// A constant (no gradient) of dtype dt.
Tensor konst(DType dt, const Shape& s, double lo = -1.0, double hi = 1.0) {
  return test::make_tensor(uniform(s.numel(), lo, hi), s, dt, false);
}
// Values rounded to multiples of 0.25 (so comparisons see equal elements).
Tensor coarse(DType dt, const Shape& s) {
  std::vector<double> v = uniform(s.numel(), -1.0, 1.0);
  for (double& x : v) x = std::round(x * 4.0) / 4.0;
  return test::make_tensor(v, s, dt, false);
}
Tensor classes(const Shape& s, int64_t C, int64_t ignore_every = 0) {
  std::vector<int64_t> v(static_cast<size_t>(s.numel()));
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = ignore_every && i % static_cast<size_t>(ignore_every) == 1 ? -100 : static_cast<int64_t>(next_unit() * C);
  return from_vector(v, s);
}
Tensor ints(const std::vector<int64_t>& v) { return from_vector(v, {static_cast<int64_t>(v.size())}); }

Case un(const std::string& label, std::function<Tensor(const Tensor&)> op, Tensor x, double tol = 1.0) {
  return {label, [op](const Inputs& in) { return op(in[0]); }, {std::move(x)}, tol};
}
Case bin(const std::string& label, std::function<Tensor(const Tensor&, const Tensor&)> op, Tensor a, Tensor b,
         double tol = 1.0) {
  return {label, [op](const Inputs& in) { return op(in[0], in[1]); }, {std::move(a), std::move(b)}, tol};
}

// Unary cases on awkward layouts: odd sizes, a vector tail, a transposed view, an expanded row.
Cases unary_cases(DType dt, std::function<Tensor(const Tensor&)> op, double lo, double hi,
                  const std::vector<double>& kinks = {}) {
  auto make = [&](const Shape& s) { return kinks.empty() ? rnd(dt, s, lo, hi) : avoid(dt, s, kinks, 0.05, lo, hi); };
  return {un("odd_7x13", op, make({7, 13})),
          un("tail_4099", op, make({4099})),
          un("transposed", [op](const Tensor& x) { return op(x.t()); }, make({9, 5})),
          un("expanded_row", [op](const Tensor& x) { return op(x.expand({4, 6})); }, make({1, 6})),
          un("scalar", op, make({}))};
}

// Binary cases: odd sizes, broadcasting, a sliced/transposed pair, a long contiguous pair, 0-d.
Cases binary_cases(DType dt, std::function<Tensor(const Tensor&, const Tensor&)> op,
                   std::function<Tensor(DType, const Shape&)> mk_a, std::function<Tensor(DType, const Shape&)> mk_b) {
  return {bin("odd_7x13", op, mk_a(dt, {7, 13}), mk_b(dt, {7, 13})),
          bin("broadcast_315_41", op, mk_a(dt, {3, 1, 5}), mk_b(dt, {4, 1})),
          bin("views", [op](const Tensor& a, const Tensor& b) { return op(a.t(), b.slice(1, 0, 14, 2)); },
              mk_a(dt, {7, 5}), mk_b(dt, {5, 14})),
          bin("long_33x1027", op, mk_a(dt, {33, 1027}), mk_b(dt, {33, 1027})),
          bin("scalar_tensor", op, mk_a(dt, {5, 6}), mk_b(dt, {}))};
}

Tensor mk_rnd(DType dt, const Shape& s) { return rnd(dt, s); }
Tensor mk_pos(DType dt, const Shape& s) { return rnd(dt, s, 0.5, 2.0); }
Tensor mk_exp(DType dt, const Shape& s) { return rnd(dt, s, -1.5, 1.5); }


// Cases for a loss f(input, target) under every reduction.
Cases loss_cases(const std::string& label, std::function<Tensor(const Tensor&, const Tensor&, Reduction)> f, Tensor a,
                 Tensor b) {
  Cases cs;
  for (Reduction r : kReductions)
    cs.push_back({label + "_" + reduction_name(r), [f, r](const Inputs& in) { return f(in[0], in[1], r); }, {a, b}});
  return cs;
}

// A view op case: the view of a leaf, then a product with a constant, so the CUDA copy and
// multiply kernels run on the view and its backward.
Case view_case(DType dt, const std::string& label, std::function<Tensor(const Tensor&)> view, const Shape& in_shape) {
  return un(label, [view](const Tensor& x) { return view(x) * 3.0; }, rnd(dt, in_shape));
}

// --- the table ---------------------------------------------------------------------------------

const std::map<std::string, Builder>& parity_table() {
  static const std::map<std::string, Builder> table = {
      // binary elementwise
      {"add", [](DType dt) {
         Cases c = binary_cases(dt, [](const Tensor& a, const Tensor& b) { return add(a, b); }, mk_rnd, mk_rnd);
         c.push_back(bin("alpha", [](const Tensor& a, const Tensor& b) { return add(a, b, -0.5); }, rnd(dt, {6, 5}), rnd(dt, {5})));
         return c;
       }},
      {"sub", [](DType dt) {
         Cases c = binary_cases(dt, [](const Tensor& a, const Tensor& b) { return sub(a, b); }, mk_rnd, mk_rnd);
         c.push_back(bin("alpha", [](const Tensor& a, const Tensor& b) { return sub(a, b, 2.0); }, rnd(dt, {6, 5}), rnd(dt, {6, 1})));
         return c;
       }},
      {"mul", [](DType dt) { return binary_cases(dt, [](const Tensor& a, const Tensor& b) { return mul(a, b); }, mk_rnd, mk_rnd); }},
      {"div", [](DType dt) { return binary_cases(dt, [](const Tensor& a, const Tensor& b) { return div(a, b); }, mk_rnd, mk_pos); }},
      {"pow", [](DType dt) { return binary_cases(dt, [](const Tensor& a, const Tensor& b) { return pow(a, b); }, mk_pos, mk_exp); }},
      {"maximum", [](DType dt) {
         return binary_cases(dt, [](const Tensor& a, const Tensor& b) { return maximum(a, b); },
                             [](DType d, const Shape& s) { return distinct(d, s, 0.003); },
                             [](DType d, const Shape& s) { return distinct(d, s, 0.0041); });
       }},
      {"minimum", [](DType dt) {
         return binary_cases(dt, [](const Tensor& a, const Tensor& b) { return minimum(a, b); },
                             [](DType d, const Shape& s) { return distinct(d, s, 0.003); },
                             [](DType d, const Shape& s) { return distinct(d, s, 0.0041); });
       }},
      // scalar variants
      {"add_scalar", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return add(x, 1.5); }, -1, 1); }},
      {"sub_scalar", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return sub(x, 1.5); }, -1, 1); }},
      {"rsub_scalar", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return rsub(x, 2.0); }, -1, 1); }},
      {"mul_scalar", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return mul(x, -2.5); }, -1, 1); }},
      {"div_scalar", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return div(x, 3.0); }, -1, 1); }},
      {"rdiv_scalar", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return rdiv(x, 3.0); }, 0.3, 2.0); }},
      {"pow_scalar", [](DType dt) {
         Cases c = unary_cases(dt, [](const Tensor& x) { return pow(x, 2.0); }, -2, 2);
         c.push_back(un("p2.5", [](const Tensor& x) { return pow(x, 2.5); }, rnd(dt, {5, 7}, 0.3, 2.0)));
         c.push_back(un("p-1.5", [](const Tensor& x) { return pow(x, -1.5); }, rnd(dt, {5, 7}, 0.3, 2.0)));
         c.push_back(un("p3", [](const Tensor& x) { return pow(x, 3.0); }, rnd(dt, {5, 7}, -2.0, 2.0)));
         return c;
       }},
      // unary
      {"neg", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return neg(x); }, -1, 1); }},
      {"exp", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return exp(x); }, -3, 3); }},
      {"log", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return log(x); }, 0.05, 4); }},
      {"sqrt", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return sqrt(x); }, 0.05, 4); }},
      {"abs", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return abs(x); }, -2, 2, {0.0}); }},
      {"sign", [](DType dt) {
         Cases c = unary_cases(dt, [](const Tensor& x) { return sign(x); }, -2, 2);
         c.push_back(un("zeros", [](const Tensor& x) { return sign(x); }, coarse(dt, {9, 9})));
         return c;
       }},
      {"clamp", [](DType dt) {
         Cases c = unary_cases(dt, [](const Tensor& x) { return clamp(x, -0.5, 0.5); }, -1, 1, {-0.5, 0.5});
         c.push_back(un("min_only", [](const Tensor& x) { return clamp(x, -0.2, std::nullopt); }, avoid(dt, {7, 7}, {-0.2})));
         c.push_back(un("max_only", [](const Tensor& x) { return clamp(x, std::nullopt, 0.3); }, avoid(dt, {7, 7}, {0.3})));
         return c;
       }},
      {"relu", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return relu(x); }, -2, 2, {0.0}); }},
      {"leaky_relu", [](DType dt) {
         Cases c = unary_cases(dt, [](const Tensor& x) { return leaky_relu(x, 0.2); }, -2, 2, {0.0});
         c.push_back(un("default_slope", [](const Tensor& x) { return leaky_relu(x); }, avoid(dt, {5, 9}, {0.0})));
         return c;
       }},
      {"sigmoid", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return sigmoid(x); }, -6, 6); }},
      {"tanh", [](DType dt) { return unary_cases(dt, [](const Tensor& x) { return tanh(x); }, -4, 4); }},
      {"gelu", [](DType dt) {
         Cases c = unary_cases(dt, [](const Tensor& x) { return gelu(x); }, -4, 4);
         for (Case& k : unary_cases(dt, [](const Tensor& x) { return gelu(x, "tanh"); }, -4, 4)) {
           k.label = "tanh_" + k.label;
           c.push_back(k);
         }
         return c;
       }},
      // comparisons (no gradient): coarse values so that some elements are equal
      {"eq", [](DType dt) { return Cases{bin("same", [](const Tensor& a, const Tensor& b) { return eq(a, b); }, coarse(dt, {7, 13}), coarse(dt, {7, 13})),
                                         bin("bcast", [](const Tensor& a, const Tensor& b) { return eq(a, b); }, coarse(dt, {3, 1, 5}), coarse(dt, {4, 1}))}; }},
      {"gt", [](DType dt) { return Cases{bin("same", [](const Tensor& a, const Tensor& b) { return gt(a, b); }, coarse(dt, {7, 13}), coarse(dt, {7, 13})),
                                         bin("views", [](const Tensor& a, const Tensor& b) { return gt(a.t(), b); }, coarse(dt, {5, 3}), coarse(dt, {5}))}; }},
      {"lt", [](DType dt) { return Cases{bin("same", [](const Tensor& a, const Tensor& b) { return lt(a, b); }, coarse(dt, {1031}), coarse(dt, {1031}))}; }},
      {"ge", [](DType dt) { return Cases{bin("same", [](const Tensor& a, const Tensor& b) { return ge(a, b); }, coarse(dt, {7, 13}), coarse(dt, {7, 13}))}; }},
      {"le", [](DType dt) { return Cases{bin("bcast", [](const Tensor& a, const Tensor& b) { return le(a, b); }, coarse(dt, {3, 1}), coarse(dt, {1, 6}))}; }},
      {"where", [](DType dt) {
         return Cases{{"same", [](const Inputs& in) { return where(gt(in[2], zeros({}, in[2].dtype()).to(in[2].device())), in[0], in[1]); },
                       {rnd(dt, {7, 13}), rnd(dt, {7, 13}), konst(dt, {7, 13})}},
                      {"broadcast", [](const Inputs& in) { return where(gt(in[2], zeros({}, in[2].dtype()).to(in[2].device())), in[0], in[1]); },
                       {rnd(dt, {6}), rnd(dt, {5, 6}), konst(dt, {5, 1})}}};
       }},
      // reductions
      {"sum", [](DType dt) {
         return Cases{un("all_odd", [](const Tensor& x) { return sum(x); }, rnd(dt, {7, 13})),
                      un("all_long", [](const Tensor& x) { return sum(x); }, rnd(dt, {300, 701})),
                      un("rows_1025", [](const Tensor& x) { return sum(x, {1}); }, rnd(dt, {7, 1025})),
                      un("cols_few_outputs", [](const Tensor& x) { return sum(x, {0}); }, rnd(dt, {3001, 7})),
                      un("cols_many_outputs", [](const Tensor& x) { return sum(x, {0}); }, rnd(dt, {40, 2051})),
                      un("dims02_keep", [](const Tensor& x) { return sum(x, {0, 2}, true); }, rnd(dt, {5, 6, 7})),
                      un("transposed", [](const Tensor& x) { return sum(x.t(), {1}); }, rnd(dt, {37, 11})),
                      un("expanded", [](const Tensor& x) { return sum(x.expand({9, 8}), {0}); }, rnd(dt, {1, 8}))};
       }},
      {"mean", [](DType dt) {
         return Cases{un("all", [](const Tensor& x) { return mean(x); }, rnd(dt, {123, 457})),
                      un("dim1", [](const Tensor& x) { return mean(x, {1}); }, rnd(dt, {5, 67, 3})),
                      un("dims12_keep", [](const Tensor& x) { return mean(x, {1, 2}, true); }, rnd(dt, {4, 33, 35}))};
       }},
      {"max", [](DType dt) {
         return Cases{un("all", [](const Tensor& x) { return max(x); }, distinct(dt, {7, 13})),
                      un("all_long", [](const Tensor& x) { return max(x); }, distinct(dt, {301, 299}, 1e-4))};
       }},
      {"max_dim", [](DType dt) {
         return Cases{un("dim1", [](const Tensor& x) { return max(x, 1).values; }, distinct(dt, {7, 13})),
                      un("dim0_keep", [](const Tensor& x) { return max(x, 0, true).values; }, distinct(dt, {67, 5})),
                      un("dim-1_long", [](const Tensor& x) { return max(x, -1).values; }, distinct(dt, {3, 2, 1500}, 1e-4)),
                      un("indices", [](const Tensor& x) { return max(x, 1).indices; }, distinct(dt, {9, 40}))};
       }},
      {"argmax", [](DType dt) {
         return Cases{un("dim1", [](const Tensor& x) { return argmax(x, 1); }, coarse(dt, {7, 13})),
                      un("dim0_long", [](const Tensor& x) { return argmax(x, 0); }, coarse(dt, {3000, 3})),
                      un("transposed", [](const Tensor& x) { return argmax(x.t(), 1, true); }, coarse(dt, {50, 4}))};
       }},
      {"sum_to", [](DType dt) {
         return Cases{un("to_31", [](const Tensor& x) { return sum_to(x, {3, 1}); }, rnd(dt, {2, 3, 5})),
                      un("bias_grad", [](const Tensor& x) { return sum_to(x, {17}); }, rnd(dt, {129, 17})),
                      un("to_scalar", [](const Tensor& x) { return sum_to(x, Shape{}); }, rnd(dt, {13, 7}))};
       }},
      {"softmax", [](DType dt) {
         return Cases{un("rows_7x13", [](const Tensor& x) { return softmax(x, 1); }, rnd(dt, {7, 13}, -3, 3)),
                      un("long_row", [](const Tensor& x) { return softmax(x, -1); }, rnd(dt, {3, 5000}, -3, 3)),
                      un("inner_dim", [](const Tensor& x) { return softmax(x, 1); }, rnd(dt, {4, 9, 5}, -3, 3)),
                      un("large_values", [](const Tensor& x) { return softmax(x * 40.0, 1); }, rnd(dt, {6, 11})),
                      un("transposed", [](const Tensor& x) { return softmax(x.t(), -1); }, rnd(dt, {5, 8}, -3, 3))};
       }},
      {"log_softmax", [](DType dt) {
         return Cases{un("rows_7x13", [](const Tensor& x) { return log_softmax(x, 1); }, rnd(dt, {7, 13}, -3, 3)),
                      un("long_row", [](const Tensor& x) { return log_softmax(x, -1); }, rnd(dt, {2, 4097}, -3, 3)),
                      un("inner_dim", [](const Tensor& x) { return log_softmax(x, 0); }, rnd(dt, {9, 4, 3}, -3, 3))};
       }},
      // linear algebra
      {"matmul", [](DType dt) {
         auto mm = [](const Tensor& a, const Tensor& b) { return matmul(a, b); };
         return Cases{bin("mm_odd", mm, rnd(dt, {7, 13}), rnd(dt, {13, 5}), 10),
                      bin("mm_big", mm, rnd(dt, {65, 129}), rnd(dt, {129, 67}), 10),
                      bin("vv", mm, rnd(dt, {13}), rnd(dt, {13}), 10),
                      bin("mv", mm, rnd(dt, {7, 13}), rnd(dt, {13}), 10),
                      bin("vm", mm, rnd(dt, {13}), rnd(dt, {13, 5}), 10),
                      bin("bmm", mm, rnd(dt, {3, 7, 13}), rnd(dt, {3, 13, 5}), 10),
                      bin("batch_broadcast", mm, rnd(dt, {2, 1, 4, 6}), rnd(dt, {3, 6, 5}), 10),
                      bin("shared_rhs", mm, rnd(dt, {3, 7, 13}), rnd(dt, {13, 5}), 10),
                      bin("shared_lhs", mm, rnd(dt, {7, 13}), rnd(dt, {3, 13, 5}), 10),
                      bin("transposed", [](const Tensor& a, const Tensor& b) { return matmul(a.t(), b.t()); },
                          rnd(dt, {13, 7}), rnd(dt, {5, 13}), 10),
                      bin("sliced", [](const Tensor& a, const Tensor& b) { return matmul(a.slice(1, 0, 26, 2), b); },
                          rnd(dt, {7, 26}), rnd(dt, {13, 5}), 10),
                      // forward only: the CPU backward of a K == 0 product throws today ("[bmm] out must
                      // be contiguous" for the (3, 0) gradient), see the CUDA backend report
                      bin("k_zero_forward", mm, konst(dt, {3, 0}), konst(dt, {0, 4}), 10)};
       }},
      {"linear", [](DType dt) {
         auto lin = [](const Inputs& in) { return linear(in[0], in[1], in.size() > 2 ? in[2] : Tensor()); };
         return Cases{{"bias", lin, {rnd(dt, {9, 13}), rnd(dt, {5, 13}), rnd(dt, {5})}, 10},
                      {"nobias", lin, {rnd(dt, {9, 13}), rnd(dt, {5, 13})}, 10},
                      {"3d", lin, {rnd(dt, {2, 7, 13}), rnd(dt, {3, 13}), rnd(dt, {3})}, 10},
                      {"1d", lin, {rnd(dt, {13}), rnd(dt, {3, 13}), rnd(dt, {3})}, 10}};
       }},
      {"linear_relu", [](DType dt) {
         auto lin = [](const Inputs& in) { return linear_relu(in[0], in[1], in.size() > 2 ? in[2] : Tensor()); };
         return Cases{{"bias", lin, {rnd(dt, {9, 13}), rnd(dt, {5, 13}), rnd(dt, {5})}, 10},
                      {"nobias", lin, {rnd(dt, {2, 7, 13}), rnd(dt, {3, 13})}, 10}};
       }},
      {"linear_packed", [](DType dt) {
         auto lin = [](const Inputs& in) { return linear_packed(in[0], pack_linear_weight(in[1]), in[2], true); };
         return Cases{{"bias_relu", lin, {rnd(dt, {9, 13}), rnd(dt, {5, 13}), rnd(dt, {5})}, 10}};
       }},
      // convolution and pooling
      {"conv2d", [](DType dt) {
         auto conv = [](Conv2dOptions o) {
           return [o](const Inputs& in) { return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), o); };
         };
         return Cases{{"basic_pad1", conv(conv_opts({1, 1}, {1, 1}, {1, 1}, 1)), {rnd(dt, {2, 3, 9, 11}), rnd(dt, {4, 3, 3, 3}), rnd(dt, {4})}, 10},
                      {"stride2_dil2", conv(conv_opts({2, 2}, {0, 1}, {2, 2}, 1)), {rnd(dt, {2, 2, 11, 9}), rnd(dt, {3, 2, 3, 2})}, 10},
                      {"groups2", conv(conv_opts({2, 1}, {1, 0}, {1, 1}, 2)), {rnd(dt, {1, 4, 7, 7}), rnd(dt, {6, 2, 3, 3}), rnd(dt, {6})}, 10},
                      {"depthwise", conv(conv_opts({1, 1}, {1, 1}, {1, 1}, 3)), {rnd(dt, {2, 3, 6, 5}), rnd(dt, {3, 1, 3, 3})}, 10},
                      {"pointwise", conv(conv_opts({1, 1}, {0, 0}, {1, 1}, 1)), {rnd(dt, {3, 5, 4, 6}), rnd(dt, {7, 5, 1, 1}), rnd(dt, {7})}, 10},
                      {"unbatched", conv(conv_opts({1, 1}, {0, 0}, {1, 1}, 1)), {rnd(dt, {3, 7, 8}), rnd(dt, {2, 3, 2, 2})}, 10},
                      {"non_contiguous_input", [](const Inputs& in) { return conv2d(in[0].transpose(2, 3), in[1]); },
                       {rnd(dt, {2, 3, 8, 9}), rnd(dt, {4, 3, 3, 3})}, 10}};
       }},
      {"conv_transpose2d", [](DType dt) {
         auto convt = [](Conv2dOptions o) {
           return [o](const Inputs& in) { return conv_transpose2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), o); };
         };
         return Cases{{"basic", convt(conv_opts({1, 1}, {0, 0}, {1, 1}, 1)), {rnd(dt, {2, 4, 5, 6}), rnd(dt, {4, 3, 3, 3}), rnd(dt, {3})}, 10},
                      {"stride2_pad1_outpad1", convt(conv_opts({2, 2}, {1, 1}, {1, 1}, 1, {1, 1})), {rnd(dt, {2, 4, 5, 6}), rnd(dt, {4, 3, 3, 3}), rnd(dt, {3})}, 10},
                      {"groups2", convt(conv_opts({2, 2}, {0, 0}, {1, 1}, 2)), {rnd(dt, {1, 4, 3, 5}), rnd(dt, {4, 1, 2, 2})}, 10},
                      // output_padding reaches the stride (allowed by the dilation): cuDNN has no
                      // matching forward, so this runs the direct kernels
                      {"outpad_ge_stride", convt(conv_opts({1, 1}, {0, 0}, {2, 2}, 1, {1, 1})), {rnd(dt, {1, 2, 4, 4}), rnd(dt, {2, 3, 2, 2}), rnd(dt, {3})}, 10}};
       }},
      {"max_pool2d", [](DType dt) {
         auto pool = [](Pool2dOptions o) { return [o](const Inputs& in) { return max_pool2d(in[0], o); }; };
         return Cases{{"k2", pool(pool_opts({2, 2}, {}, {0, 0})), {distinct(dt, {2, 3, 8, 10})}},
                      {"k3s2p1", pool(pool_opts({3, 3}, {2, 2}, {1, 1})), {distinct(dt, {2, 3, 9, 11})}},
                      {"overlap_k3s1", pool(pool_opts({3, 3}, {1, 1}, {0, 0})), {distinct(dt, {1, 2, 7, 7})}},
                      {"dilation2", pool(pool_opts({2, 2}, {1, 1}, {0, 0}, {2, 2})), {distinct(dt, {1, 2, 7, 6})}},
                      {"ceil", pool(pool_opts({2, 2}, {2, 2}, {0, 0}, {1, 1}, true)), {distinct(dt, {1, 3, 7, 7})}},
                      {"unbatched_rect", pool(pool_opts({2, 3}, {1, 2}, {0, 1})), {distinct(dt, {3, 6, 7})}}};
       }},
      {"avg_pool2d", [](DType dt) {
         auto pool = [](Pool2dOptions o) { return [o](const Inputs& in) { return avg_pool2d(in[0], o); }; };
         return Cases{{"k2", pool(pool_opts({2, 2}, {}, {0, 0})), {rnd(dt, {2, 3, 8, 10})}},
                      {"k3s2p1_incl", pool(pool_opts({3, 3}, {2, 2}, {1, 1})), {rnd(dt, {2, 3, 9, 11})}},
                      {"k3s2p1_excl", pool(pool_opts({3, 3}, {2, 2}, {1, 1}, {1, 1}, false, false)), {rnd(dt, {2, 3, 9, 11})}},
                      {"overlap_k3s1", pool(pool_opts({3, 3}, {1, 1}, {1, 1})), {rnd(dt, {1, 2, 6, 7})}},
                      {"ceil", pool(pool_opts({2, 2}, {2, 2}, {0, 0}, {1, 1}, true)), {rnd(dt, {1, 3, 7, 7})}}};
       }},
      {"dropout", [](DType dt) {
         Cases c{un("train_p0.3", [](const Tensor& x) { return dropout(x, 0.3, true); }, rnd(dt, {7, 13})),
                 un("train_long", [](const Tensor& x) { return dropout(x, 0.5, true); }, rnd(dt, {4097})),
                 un("train_p0", [](const Tensor& x) { return dropout(x, 0.0, true); }, rnd(dt, {5})),
                 un("eval", [](const Tensor& x) { return dropout(x, 0.5, false); }, rnd(dt, {5, 3}))};
         for (Case& k : c) k.seeded = true;
         return c;
       }},
      // losses
      {"mse_loss", [](DType dt) { return loss_cases("mse", [](const Tensor& a, const Tensor& b, Reduction r) { return mse_loss(a, b, r); }, rnd(dt, {7, 13}), rnd(dt, {7, 13})); }},
      {"l1_loss", [](DType dt) {
         Tensor a = rnd(dt, {7, 13});
         std::vector<double> av = test::values_f64(a), bv(av.size());
         for (size_t i = 0; i < av.size(); ++i) bv[i] = av[i] + (i % 2 ? 0.3 : -0.2);
         return loss_cases("l1", [](const Tensor& x, const Tensor& y, Reduction r) { return l1_loss(x, y, r); }, a,
                           test::make_tensor(bv, {7, 13}, dt, true));
       }},
      {"smooth_l1_loss", [](DType dt) {
         Cases c = loss_cases("beta1", [](const Tensor& a, const Tensor& b, Reduction r) { return smooth_l1_loss(a, b, r, 1.0); }, rnd(dt, {7, 13}, -2, 2), rnd(dt, {7, 13}, -2, 2));
         for (Case& k : loss_cases("beta0.5", [](const Tensor& a, const Tensor& b, Reduction r) { return smooth_l1_loss(a, b, r, 0.5); }, rnd(dt, {7, 13}, -2, 2), rnd(dt, {7, 13}, -2, 2)))
           c.push_back(k);
         return c;
       }},
      {"binary_cross_entropy", [](DType dt) {
         Cases c = loss_cases("plain", [](const Tensor& a, const Tensor& b, Reduction r) { return binary_cross_entropy(a, b, r); }, rnd(dt, {7, 13}, 0.05, 0.95), rnd(dt, {7, 13}, 0, 1));
         c.push_back({"weighted", [](const Inputs& in) { return binary_cross_entropy(in[0], in[1], Reduction::Mean, in[2]); },
                      {rnd(dt, {7, 13}, 0.05, 0.95), rnd(dt, {7, 13}, 0, 1), konst(dt, {13}, 0.5, 2)}});
         return c;
       }},
      {"binary_cross_entropy_with_logits", [](DType dt) {
         Cases c = loss_cases("plain", [](const Tensor& a, const Tensor& b, Reduction r) { return binary_cross_entropy_with_logits(a, b, r); }, rnd(dt, {7, 13}, -5, 5), rnd(dt, {7, 13}, 0, 1));
         c.push_back({"weights", [](const Inputs& in) { return binary_cross_entropy_with_logits(in[0], in[1], Reduction::Mean, in[2], in[3]); },
                      {rnd(dt, {7, 13}, -5, 5), rnd(dt, {7, 13}, 0, 1), konst(dt, {7, 1}, 0.5, 2), konst(dt, {13}, 0.5, 3)}});
         return c;
       }},
      {"nll_loss", [](DType dt) {
         Cases c;
         for (Reduction r : kReductions) {
           c.push_back({std::string("2d_") + reduction_name(r), [r](const Inputs& in) { return nll_loss(log_softmax(in[0], 1), in[1], r); },
                        {rnd(dt, {37, 11}, -2, 2), classes({37}, 11)}});
           c.push_back({std::string("4d_ignore_weight_") + reduction_name(r),
                        [r](const Inputs& in) { return nll_loss(log_softmax(in[0], 1), in[1], r, -100, in[2]); },
                        {rnd(dt, {2, 5, 3, 4}, -2, 2), classes({2, 3, 4}, 5, 4), konst(dt, {5}, 0.5, 2)}});
         }
         c.push_back({"1d", [](const Inputs& in) { return nll_loss(log_softmax(in[0], 0), in[1]); },
                      {rnd(dt, {6}, -2, 2), from_vector(std::vector<int64_t>{4}, Shape{})}});
         return c;
       }},
      {"cross_entropy", [](DType dt) {
         return Cases{{"mean", [](const Inputs& in) { return cross_entropy(in[0], in[1]); }, {rnd(dt, {129, 10}, -3, 3), classes({129}, 10)}},
                      {"smoothing_weight_ignore", [](const Inputs& in) { return cross_entropy(in[0], in[1], Reduction::Mean, -100, 0.1, in[2]); },
                       {rnd(dt, {17, 7}, -3, 3), classes({17}, 7, 5), konst(dt, {7}, 0.5, 2)}},
                      {"spatial_sum", [](const Inputs& in) { return cross_entropy(in[0], in[1], Reduction::Sum); },
                       {rnd(dt, {2, 4, 3, 5}, -3, 3), classes({2, 3, 5}, 4)}}};
       }},
      // joining and indexing
      {"cat", [](DType dt) {
         return Cases{{"dim0", [](const Inputs& in) { return cat({in[0], in[1], in[2]}, 0); }, {rnd(dt, {2, 3}), rnd(dt, {5, 3}), rnd(dt, {1, 3})}},
                      {"dim1_views", [](const Inputs& in) { return cat({in[0].t(), in[1]}, 1); }, {rnd(dt, {3, 4}), rnd(dt, {4, 7})}}};
       }},
      {"stack", [](DType dt) {
         return Cases{{"dim1", [](const Inputs& in) { return stack({in[0], in[1], in[2]}, 1); }, {rnd(dt, {3, 5}), rnd(dt, {3, 5}), rnd(dt, {3, 5})}}};
       }},
      {"index_select", [](DType dt) {
         return Cases{{"dim0_repeats", [](const Inputs& in) { return index_select(in[0], 0, in[1]); }, {rnd(dt, {7, 5}), ints({0, 3, 3, 6, 1, 3})}},
                      {"dim1", [](const Inputs& in) { return index_select(in[0], 1, in[1]); }, {rnd(dt, {4, 9, 3}), ints({8, 0, 0, 5})}},
                      {"many_repeats", [](const Inputs& in) { return index_select(in[0], 0, in[1]); },
                       {rnd(dt, {11, 3}), [] {
                          std::vector<int64_t> v(300);
                          for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>((i * 7) % 11);
                          return ints(v);
                        }()}}};
       }},
      {"embedding", [](DType dt) {
         return Cases{{"2d_indices", [](const Inputs& in) { return embedding(in[0], in[1]); },
                       {rnd(dt, {10, 4}), from_vector(std::vector<int64_t>{1, 9, 1, 0, 4, 9}, {2, 3})}}};
       }},
      // views (each followed by a multiply, so copy and elementwise kernels run on the view)
      {"view", [](DType dt) { return Cases{view_case(dt, "split", [](const Tensor& x) { return x.view({3, 2, 7}); }, {6, 7})}; }},
      {"reshape", [](DType dt) { return Cases{view_case(dt, "of_transposed", [](const Tensor& x) { return x.t().reshape({-1}); }, {5, 7})}; }},
      {"permute", [](DType dt) { return Cases{view_case(dt, "201", [](const Tensor& x) { return x.permute({2, 0, 1}); }, {3, 4, 5})}; }},
      {"transpose", [](DType dt) { return Cases{view_case(dt, "02", [](const Tensor& x) { return x.transpose(0, 2); }, {3, 4, 5})}; }},
      {"narrow", [](DType dt) { return Cases{view_case(dt, "dim1", [](const Tensor& x) { return x.narrow(1, 2, 5); }, {4, 9})}; }},
      {"slice", [](DType dt) { return Cases{view_case(dt, "step3", [](const Tensor& x) { return x.slice(0, 1, 10, 3); }, {11, 4})}; }},
      {"select", [](DType dt) { return Cases{view_case(dt, "dim1", [](const Tensor& x) { return x.select(1, 2); }, {4, 5, 3})}; }},
      {"expand", [](DType dt) { return Cases{view_case(dt, "lead_and_col", [](const Tensor& x) { return x.expand({2, 5, 4}); }, {5, 1})}; }},
      {"squeeze", [](DType dt) { return Cases{view_case(dt, "all", [](const Tensor& x) { return x.squeeze(); }, {1, 7, 1, 3})}; }},
      {"unsqueeze", [](DType dt) { return Cases{view_case(dt, "mid", [](const Tensor& x) { return x.unsqueeze(1); }, {7, 3})}; }},
      {"flatten", [](DType dt) { return Cases{view_case(dt, "of_permuted", [](const Tensor& x) { return x.permute({1, 0, 2}).flatten(); }, {3, 4, 5})}; }},
      {"contiguous", [](DType dt) { return Cases{view_case(dt, "transposed", [](const Tensor& x) { return x.t().contiguous(); }, {13, 7})}; }},
      {"clone", [](DType dt) { return Cases{view_case(dt, "sliced", [](const Tensor& x) { return x.slice(1, 1, 9, 2).clone(); }, {5, 9})}; }},
      {"to_dtype", [](DType dt) {
         const DType other = dt == DType::f32 ? DType::f64 : DType::f32;
         return Cases{un("float_other", [other](const Tensor& x) { return x.to(other); }, rnd(dt, {7, 13})),
                      un("via_f16", [](const Tensor& x) { return x.to(DType::f16).to(DType::f32); }, rnd(dt, {7, 13}, -70000, 70000)),
                      un("via_bf16_strided", [](const Tensor& x) { return x.t().to(DType::bf16).to(DType::f64); }, rnd(dt, {9, 5}, -1e5, 1e5)),
                      un("to_i64", [](const Tensor& x) { return x.detach().to(DType::i64); }, rnd(dt, {5, 6}, -100, 100)),
                      un("to_bool", [](const Tensor& x) { return x.detach().to(DType::b8); }, coarse(dt, {5, 6}))};
       }},
  };
  return table;
}

// --- the runner --------------------------------------------------------------------------------

struct Result {
  Tensor out;                 // on the CPU
  std::vector<Tensor> grads;  // per input (undefined when it has none)
};

Result run_on(const Case& c, Device d) {
  Inputs in;
  for (const Tensor& t : c.inputs) {
    Tensor x = t.detach().to(d);
    if (t.requires_grad()) x.requires_grad_(true);
    in.push_back(x);
  }
  if (c.seeded) manual_seed(20240611);
  Tensor y = c.f(in);
  Result r;
  if (y.requires_grad()) {
    uint64_t saved = g_seed;
    g_seed = 0xFEED;  // the same w on both devices
    Tensor w = test::make_tensor(uniform(y.numel(), -1.0, 1.0), y.shape(), y.dtype()).to(d);
    g_seed = saved;
    sum(mul(y, w)).backward();
    for (const Tensor& x : in) r.grads.push_back(x.requires_grad() && x.grad().defined() ? x.grad().to(kCPU) : Tensor());
  }
  r.out = y.detach().to(kCPU);
  return r;
}

// Tolerances per dtype: f32 kernels differ from the CPU's by a few ulps (device math functions,
// summation order in GEMM and convolution); f64 by far less.
std::pair<double, double> tolerances(DType dt, double scale) {
  if (dt == DType::f64) return {1e-10 * scale, 1e-12 * scale};
  return {2e-5 * scale, 2e-6 * scale};
}

class CudaParity : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaParity, ForwardAndBackwardMatchCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device: " << cuda_unavailable_reason();
  const std::string& op = GetParam();
  auto it = parity_table().find(op);
  ASSERT_NE(it, parity_table().end()) << "no CUDA parity cases for registry op '" << op << "'";
  for (DType dt : {DType::f32, DType::f64}) {
    g_seed = std::hash<std::string>{}(op) ^ static_cast<uint64_t>(dt);
    const Cases cases = it->second(dt);
    ASSERT_FALSE(cases.empty()) << op;
    for (const Case& c : cases) {
      SCOPED_TRACE(op + "/" + c.label + "/" + dtype_name(dt));
      const Result cpu = run_on(c, kCPU);
      const Result gpu = run_on(c, cuda_device(0));
      const auto [rtol, atol] = tolerances(dt, c.tol);
      if (is_floating(cpu.out.dtype())) {
        EXPECT_EQ(gpu.out.dtype(), cpu.out.dtype());
        EXPECT_TRUE(test::allclose(gpu.out, cpu.out, rtol, atol)) << "forward";
      } else {
        EXPECT_TRUE(test::bit_equal(gpu.out, cpu.out)) << "forward (exact for non-floating results)";
      }
      ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
      for (size_t i = 0; i < cpu.grads.size(); ++i) {
        ASSERT_EQ(gpu.grads[i].defined(), cpu.grads[i].defined()) << "gradient of input " << i;
        if (cpu.grads[i].defined()) {
          EXPECT_TRUE(test::allclose(gpu.grads[i], cpu.grads[i], rtol, atol)) << "gradient of input " << i;
        }
      }
    }
  }
}

std::vector<std::string> registry_names() {
  std::vector<std::string> names;
  for (const OpInfo& op : op_registry()) names.push_back(op.name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Registry, CudaParity, ::testing::ValuesIn(registry_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

// Runs without a GPU: every registry op needs a parity case, and the table names no other op.
TEST(CudaParityCoverage, EveryRegistryOpHasACudaParityCase) {
  std::string missing;
  for (const OpInfo& op : op_registry())
    if (!parity_table().count(op.name)) missing += std::string(missing.empty() ? "" : ", ") + op.name;
  EXPECT_TRUE(missing.empty()) << "registry ops without a CUDA parity case in tests/cuda/test_parity.cpp: " << missing;
  std::string unknown;
  for (const auto& [name, builder] : parity_table()) {
    bool found = false;
    for (const OpInfo& op : op_registry()) found = found || name == op.name;
    if (!found) unknown += std::string(unknown.empty() ? "" : ", ") + name;
  }
  EXPECT_TRUE(unknown.empty()) << "parity cases for ops not in the registry: " << unknown;
}

// Runs without a GPU: every case builds and has inputs (so a GPU session finds no broken table).
TEST(CudaParityCoverage, EveryCaseBuildsOnTheCpu) {
  for (const auto& [name, builder] : parity_table()) {
    for (DType dt : {DType::f32, DType::f64}) {
      const Cases cases = builder(dt);
      EXPECT_FALSE(cases.empty()) << name;
      for (const Case& c : cases) {
        SCOPED_TRACE(name + "/" + c.label);
        EXPECT_FALSE(c.inputs.empty());
        try {
          EXPECT_TRUE(run_on(c, kCPU).out.defined());
        } catch (const std::exception& e) {
          ADD_FAILURE() << name << "/" << c.label << "/" << dtype_name(dt) << " throws on the CPU: " << e.what();
        }
      }
    }
  }
}

}  // namespace
}  // namespace ember
