// Float64 central-difference gradient checks for every differentiable op of ember::op_registry(),
// keyed by registry name. Inputs stay away from kinks (abs/relu/clamp/max/pool ties, |x - t| in
// l1 losses). The Coverage test fails listing any differentiable op without a check here.
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "ember/runtime/autograd.h"
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

struct GradCase {
  std::string label;
  Fn f;
  Inputs inputs;
  double eps = 1e-6, atol = 1e-5, rtol = 1e-4;
};
using CaseList = std::vector<GradCase>;

// --- deterministic inputs (splitmix64; no dependence on Ember's RNG) -------------------------------

uint64_t g_seed = 0x1234567ULL;
double next_unit() {
  uint64_t z = (g_seed += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * 0x1.0p-53;
}

Tensor leaf(const std::vector<double>& v, const Shape& s) { return test::make_tensor(v, s, DType::f64, true); }
Tensor constant(const std::vector<double>& v, const Shape& s, DType dt = DType::f64) {
  return test::make_tensor(v, s, dt, false);
}

std::vector<double> uniform_values(int64_t n, double lo, double hi) {
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = lo + (hi - lo) * next_unit();
  return v;
}

// U[lo, hi) leaf.
Tensor rnd(const Shape& s, double lo = -1.0, double hi = 1.0) { return leaf(uniform_values(s.numel(), lo, hi), s); }

// Leaf with values at least `margin` away from each of `points`, inside [lo, hi).
Tensor avoid(const Shape& s, const std::vector<double>& points, double margin = 0.1, double lo = -2.0, double hi = 2.0) {
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (double& x : v) {
    bool ok = false;
    while (!ok) {
      x = lo + (hi - lo) * next_unit();
      ok = true;
      for (double p : points) ok = ok && std::fabs(x - p) >= margin;
    }
  }
  return leaf(v, s);
}

// Leaf holding a random permutation of {-k*step, ..., }: all values distinct by `step`, so max/argmax
// and pooling windows never tie under a 1e-6 perturbation.
Tensor distinct(const Shape& s, double step = 0.05) {
  const int64_t n = s.numel();
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = step * static_cast<double>(i - n / 2);
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[static_cast<size_t>(i)], v[static_cast<size_t>(next_unit() * (i + 1))]);
  return leaf(v, s);
}

Tensor indices(const std::vector<int64_t>& v, const Shape& s) { return from_vector(v, s); }

GradCase unary_case(const std::string& label, std::function<Tensor(const Tensor&)> op, Tensor x) {
  return {label, [op](const Inputs& in) { return op(in[0]); }, {x}};
}


// --- the table ---------------------------------------------------------------------------------

const std::map<std::string, std::function<CaseList()>>& gradcheck_table() {
  static const std::map<std::string, std::function<CaseList()>> table = {
      // binary elementwise (broadcasting)
      {"add",
       [] {
         return CaseList{{"same", [](const Inputs& in) { return add(in[0], in[1]); }, {rnd({3, 4}), rnd({3, 4})}},
                         {"broadcast", [](const Inputs& in) { return add(in[0], in[1]); }, {rnd({3, 1}), rnd({1, 4})}},
                         {"rank", [](const Inputs& in) { return add(in[0], in[1]); }, {rnd({2, 3, 4}), rnd({4})}},
                         {"alpha", [](const Inputs& in) { return add(in[0], in[1], -0.5); }, {rnd({2, 3}), rnd({2, 1})}}};
       }},
      {"sub",
       [] {
         return CaseList{{"broadcast", [](const Inputs& in) { return sub(in[0], in[1]); }, {rnd({3, 1}), rnd({4})}},
                         {"alpha", [](const Inputs& in) { return sub(in[0], in[1], 2.0); }, {rnd({2, 3}), rnd({2, 3})}}};
       }},
      {"mul",
       [] {
         return CaseList{{"broadcast", [](const Inputs& in) { return mul(in[0], in[1]); }, {rnd({2, 3, 1}), rnd({3, 4})}},
                         {"self", [](const Inputs& in) { return mul(in[0], in[0]); }, {rnd({5})}},
                         {"scalar_tensor", [](const Inputs& in) { return mul(in[0], in[1]); }, {rnd({2, 2}), rnd({})}}};
       }},
      {"div",
       [] {
         return CaseList{{"same", [](const Inputs& in) { return div(in[0], in[1]); }, {rnd({3, 4}), avoid({3, 4}, {0}, 0.5)}},
                         {"broadcast", [](const Inputs& in) { return div(in[0], in[1]); }, {rnd({2, 3}), avoid({3}, {0}, 0.5)}}};
       }},
      {"pow",
       [] {
         return CaseList{{"same", [](const Inputs& in) { return pow(in[0], in[1]); }, {rnd({3, 4}, 0.5, 2.0), rnd({3, 4}, -1.5, 1.5)}},
                         {"broadcast", [](const Inputs& in) { return pow(in[0], in[1]); }, {rnd({2, 3}, 0.5, 2.0), rnd({3}, -1.5, 2.5)}}};
       }},
      {"maximum",
       [] {
         Tensor a = rnd({3, 4});
         std::vector<double> av = test::values_f64(a), bv(av.size());
         for (size_t i = 0; i < av.size(); ++i) bv[i] = av[i] + (i % 2 ? 0.3 : -0.3);
         return CaseList{{"same", [](const Inputs& in) { return maximum(in[0], in[1]); }, {a, leaf(bv, {3, 4})}},
                         {"broadcast", [](const Inputs& in) { return maximum(in[0], in[1]); },
                          {leaf({-1, 0.5, 2}, {3, 1}), leaf({0, 1, -2, 3}, {4})}}};
       }},
      {"minimum",
       [] {
         Tensor a = rnd({3, 4});
         std::vector<double> av = test::values_f64(a), bv(av.size());
         for (size_t i = 0; i < av.size(); ++i) bv[i] = av[i] + (i % 3 ? 0.25 : -0.25);
         return CaseList{{"same", [](const Inputs& in) { return minimum(in[0], in[1]); }, {a, leaf(bv, {3, 4})}},
                         {"broadcast", [](const Inputs& in) { return minimum(in[0], in[1]); },
                          {leaf({-1, 0.5, 2}, {3, 1}), leaf({0, 1, -2, 3}, {4})}}};
       }},
      // scalar variants
      {"add_scalar", [] { return CaseList{unary_case("s", [](const Tensor& x) { return add(x, 1.5); }, rnd({2, 3}))}; }},
      {"sub_scalar", [] { return CaseList{unary_case("s", [](const Tensor& x) { return sub(x, 1.5); }, rnd({2, 3}))}; }},
      {"rsub_scalar", [] { return CaseList{unary_case("s", [](const Tensor& x) { return rsub(x, 2.0); }, rnd({2, 3}))}; }},
      {"mul_scalar", [] { return CaseList{unary_case("s", [](const Tensor& x) { return mul(x, -2.5); }, rnd({2, 3}))}; }},
      {"div_scalar", [] { return CaseList{unary_case("s", [](const Tensor& x) { return div(x, -2.5); }, rnd({2, 3}))}; }},
      {"rdiv_scalar",
       [] { return CaseList{unary_case("s", [](const Tensor& x) { return rdiv(x, 3.0); }, avoid({2, 3}, {0}, 0.4))}; }},
      {"pow_scalar",
       [] {
         return CaseList{unary_case("p2", [](const Tensor& x) { return pow(x, 2.0); }, rnd({2, 3})),
                         unary_case("p3_neg_base", [](const Tensor& x) { return pow(x, 3.0); }, avoid({2, 3}, {0}, 0.2)),
                         unary_case("p2.5", [](const Tensor& x) { return pow(x, 2.5); }, rnd({2, 3}, 0.3, 2.0)),
                         unary_case("p-1.5", [](const Tensor& x) { return pow(x, -1.5); }, rnd({2, 3}, 0.3, 2.0)),
                         unary_case("p0.5", [](const Tensor& x) { return pow(x, 0.5); }, rnd({2, 3}, 0.3, 2.0))};
       }},
      // unary
      {"neg", [] { return CaseList{unary_case("x", [](const Tensor& x) { return neg(x); }, rnd({2, 3}))}; }},
      {"exp", [] { return CaseList{unary_case("x", [](const Tensor& x) { return exp(x); }, rnd({2, 3}, -2, 2))}; }},
      {"log", [] { return CaseList{unary_case("x", [](const Tensor& x) { return log(x); }, rnd({2, 3}, 0.3, 3))}; }},
      {"sqrt", [] { return CaseList{unary_case("x", [](const Tensor& x) { return sqrt(x); }, rnd({2, 3}, 0.3, 3))}; }},
      {"abs", [] { return CaseList{unary_case("x", [](const Tensor& x) { return abs(x); }, avoid({3, 4}, {0}))}; }},
      {"clamp",
       [] {
         return CaseList{
             unary_case("both", [](const Tensor& x) { return clamp(x, -0.5, 0.5); }, avoid({4, 4}, {-0.5, 0.5}, 0.05, -1, 1)),
             unary_case("min", [](const Tensor& x) { return clamp(x, -0.2, std::nullopt); }, avoid({4, 4}, {-0.2}, 0.05, -1, 1)),
             unary_case("max", [](const Tensor& x) { return clamp(x, std::nullopt, 0.3); }, avoid({4, 4}, {0.3}, 0.05, -1, 1))};
       }},
      {"relu", [] { return CaseList{unary_case("x", [](const Tensor& x) { return relu(x); }, avoid({3, 4}, {0}))}; }},
      {"leaky_relu",
       [] {
         return CaseList{unary_case("default", [](const Tensor& x) { return leaky_relu(x); }, avoid({3, 4}, {0})),
                         unary_case("0.2", [](const Tensor& x) { return leaky_relu(x, 0.2); }, avoid({3, 4}, {0}))};
       }},
      {"sigmoid", [] { return CaseList{unary_case("x", [](const Tensor& x) { return sigmoid(x); }, rnd({3, 4}, -4, 4))}; }},
      {"tanh", [] { return CaseList{unary_case("x", [](const Tensor& x) { return tanh(x); }, rnd({3, 4}, -3, 3))}; }},
      {"gelu",
       [] {
         return CaseList{unary_case("none", [](const Tensor& x) { return gelu(x); }, rnd({3, 4}, -3, 3)),
                         unary_case("tanh", [](const Tensor& x) { return gelu(x, "tanh"); }, rnd({3, 4}, -3, 3))};
       }},
      {"where",
       [] {
         Tensor c = constant({1, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1}, {3, 4}, DType::b8);
         Tensor cb = constant({1, 0, 1}, {3, 1}, DType::b8);
         return CaseList{{"same", [c](const Inputs& in) { return where(c, in[0], in[1]); }, {rnd({3, 4}), rnd({3, 4})}},
                         {"broadcast", [cb](const Inputs& in) { return where(cb, in[0], in[1]); }, {rnd({4}), rnd({3, 4})}}};
       }},
      // reductions
      {"sum",
       [] {
         return CaseList{unary_case("all", [](const Tensor& x) { return sum(x); }, rnd({2, 3, 4})),
                         unary_case("dim1", [](const Tensor& x) { return sum(x, {1}); }, rnd({2, 3, 4})),
                         unary_case("dims02_keep", [](const Tensor& x) { return sum(x, {0, 2}, true); }, rnd({2, 3, 4})),
                         unary_case("neg_dim", [](const Tensor& x) { return sum(x, {-1}); }, rnd({2, 3, 4})),
                         unary_case("strided", [](const Tensor& x) { return sum(x.t(), {0}); }, rnd({3, 5}))};
       }},
      {"mean",
       [] {
         return CaseList{unary_case("all", [](const Tensor& x) { return mean(x); }, rnd({2, 3, 4})),
                         unary_case("dim1", [](const Tensor& x) { return mean(x, {1}); }, rnd({2, 3, 4})),
                         unary_case("dims12_keep", [](const Tensor& x) { return mean(x, {1, 2}, true); }, rnd({2, 3, 4}))};
       }},
      {"max", [] { return CaseList{unary_case("all", [](const Tensor& x) { return max(x); }, distinct({3, 4}))}; }},
      {"max_dim",
       [] {
         return CaseList{unary_case("dim1", [](const Tensor& x) { return max(x, 1).values; }, distinct({3, 4})),
                         unary_case("dim0_keep", [](const Tensor& x) { return max(x, 0, true).values; }, distinct({3, 4})),
                         unary_case("dim-1_3d", [](const Tensor& x) { return max(x, -1).values; }, distinct({2, 3, 4}))};
       }},
      {"sum_to",
       [] {
         return CaseList{unary_case("to_31", [](const Tensor& x) { return sum_to(x, {3, 1}); }, rnd({2, 3, 4})),
                         unary_case("to_4", [](const Tensor& x) { return sum_to(x, {4}); }, rnd({2, 3, 4})),
                         unary_case("to_214", [](const Tensor& x) { return sum_to(x, {2, 1, 4}); }, rnd({2, 3, 4})),
                         unary_case("to_scalar", [](const Tensor& x) { return sum_to(x, Shape{}); }, rnd({2, 3})),
                         unary_case("same", [](const Tensor& x) { return sum_to(x, {2, 3}); }, rnd({2, 3}))};
       }},
      {"softmax",
       [] {
         return CaseList{unary_case("dim1", [](const Tensor& x) { return softmax(x, 1); }, rnd({3, 4}, -2, 2)),
                         unary_case("dim0", [](const Tensor& x) { return softmax(x, 0); }, rnd({3, 4}, -2, 2)),
                         unary_case("dim1_3d", [](const Tensor& x) { return softmax(x, 1); }, rnd({2, 3, 4}, -2, 2)),
                         unary_case("dim-1_strided", [](const Tensor& x) { return softmax(x.t(), -1); }, rnd({3, 4}, -2, 2))};
       }},
      {"log_softmax",
       [] {
         return CaseList{unary_case("dim1", [](const Tensor& x) { return log_softmax(x, 1); }, rnd({3, 4}, -2, 2)),
                         unary_case("dim0", [](const Tensor& x) { return log_softmax(x, 0); }, rnd({3, 4}, -2, 2)),
                         unary_case("dim2_3d", [](const Tensor& x) { return log_softmax(x, 2); }, rnd({2, 3, 4}, -2, 2))};
       }},
      // linear algebra
      {"matmul",
       [] {
         auto mm = [](const Inputs& in) { return matmul(in[0], in[1]); };
         return CaseList{{"vv", mm, {rnd({4}), rnd({4})}},
                         {"mv", mm, {rnd({3, 4}), rnd({4})}},
                         {"vm", mm, {rnd({4}), rnd({4, 5})}},
                         {"mm", mm, {rnd({3, 4}), rnd({4, 5})}},
                         {"bmm", mm, {rnd({2, 3, 4}), rnd({2, 4, 5})}},
                         {"broadcast", mm, {rnd({2, 1, 3, 4}), rnd({3, 4, 2})}},
                         {"mb", mm, {rnd({3, 4}), rnd({2, 4, 5})}},
                         {"bv", mm, {rnd({2, 3, 4}), rnd({4})}},
                         {"transposed", [](const Inputs& in) { return matmul(in[0].t(), in[1].t()); }, {rnd({4, 3}), rnd({5, 4})}}};
       }},
      {"linear",
       [] {
         auto lin = [](const Inputs& in) { return linear(in[0], in[1], in.size() > 2 ? in[2] : Tensor()); };
         return CaseList{{"bias", lin, {rnd({3, 4}), rnd({5, 4}), rnd({5})}},
                         {"nobias", lin, {rnd({3, 4}), rnd({5, 4})}},
                         {"3d", lin, {rnd({2, 3, 4}), rnd({2, 4}), rnd({2})}},
                         {"1d", lin, {rnd({4}), rnd({3, 4}), rnd({3})}}};
       }},
      // Outputs near 0 would put the ReLU's kink inside the central difference: the inputs are
      // positive, the weights keep most products apart from 0.
      {"linear_relu",
       [] {
         auto lin = [](const Inputs& in) { return linear_relu(in[0], in[1], in.size() > 2 ? in[2] : Tensor()); };
         return CaseList{{"bias", lin, {rnd({3, 4}, 0.5, 1.5), rnd({5, 4}), rnd({5})}},
                         {"nobias", lin, {rnd({3, 4}, 0.5, 1.5), rnd({5, 4})}},
                         {"3d", lin, {rnd({2, 3, 4}, 0.5, 1.5), rnd({2, 4}), rnd({2})}}};
       }},
      // With inputs that require grad, linear_packed is linear on the packed weight's tensor.
      {"linear_packed",
       [] {
         auto lin = [](const Inputs& in) {
           return linear_packed(in[0], pack_linear_weight(in[1]), in.size() > 2 ? in[2] : Tensor(), false);
         };
         return CaseList{{"bias", lin, {rnd({6, 4}), rnd({5, 4}), rnd({5})}}, {"nobias", lin, {rnd({6, 4}), rnd({5, 4})}}};
       }},
      // convolution and pooling
      {"conv2d",
       [] {
         auto conv = [](Conv2dOptions o) {
           return [o](const Inputs& in) { return conv2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), o); };
         };
         return CaseList{
             {"basic", conv({}), {rnd({2, 3, 5, 5}), rnd({4, 3, 3, 3}), rnd({4})}},
             {"stride2_pad1", conv(conv_opts({2, 2}, {1, 1}, {1, 1}, 1)), {rnd({1, 2, 6, 5}), rnd({3, 2, 3, 2}), rnd({3})}},
             {"dilation2", conv(conv_opts({1, 1}, {2, 2}, {2, 2}, 1)), {rnd({1, 2, 6, 6}), rnd({2, 2, 3, 3})}},
             {"groups2", conv(conv_opts({2, 1}, {1, 0}, {1, 1}, 2)), {rnd({1, 4, 5, 5}), rnd({6, 2, 3, 3}), rnd({6})}},
             {"depthwise", conv(conv_opts({1, 1}, {0, 1}, {1, 1}, 3)), {rnd({2, 3, 4, 4}), rnd({3, 1, 2, 2})}}};
       }},
      {"conv_transpose2d",
       [] {
         auto convt = [](Conv2dOptions o) {
           return [o](const Inputs& in) { return conv_transpose2d(in[0], in[1], in.size() > 2 ? in[2] : Tensor(), o); };
         };
         return CaseList{
             {"basic", convt({}), {rnd({1, 2, 3, 3}), rnd({2, 3, 3, 3}), rnd({3})}},
             {"stride2_pad1_outpad1", convt(conv_opts({2, 2}, {1, 1}, {1, 1}, 1, {1, 1})), {rnd({2, 2, 3, 3}), rnd({2, 2, 3, 3}), rnd({2})}},
             {"groups2_stride2", convt(conv_opts({2, 2}, {0, 0}, {1, 1}, 2)), {rnd({1, 4, 3, 3}), rnd({4, 1, 2, 2})}},
             {"dilation2", convt(conv_opts({1, 2}, {1, 0}, {2, 2}, 1)), {rnd({1, 2, 3, 3}), rnd({2, 2, 2, 2}), rnd({2})}}};
       }},
      {"max_pool2d",
       [] {
         auto pool = [](Pool2dOptions o) { return [o](const Inputs& in) { return max_pool2d(in[0], o); }; };
         return CaseList{{"k2s2", pool(pool_opts({2, 2}, {}, {0, 0})), {distinct({2, 2, 4, 4})}},
                         {"k3s2p1", pool(pool_opts({3, 3}, {2, 2}, {1, 1})), {distinct({1, 2, 5, 5})}},
                         {"overlap_k3s1", pool(pool_opts({3, 3}, {1, 1}, {0, 0})), {distinct({1, 1, 5, 5})}},
                         {"dilation2", pool(pool_opts({2, 2}, {1, 1}, {0, 0}, {2, 2})), {distinct({1, 2, 5, 5})}},
                         {"ceil", pool(pool_opts({2, 2}, {2, 2}, {0, 0}, {1, 1}, true)), {distinct({1, 1, 5, 5})}},
                         {"rect", pool(pool_opts({2, 3}, {1, 2}, {0, 1})), {distinct({1, 2, 4, 5})}}};
       }},
      {"avg_pool2d",
       [] {
         auto pool = [](Pool2dOptions o) { return [o](const Inputs& in) { return avg_pool2d(in[0], o); }; };
         return CaseList{{"k2s2", pool(pool_opts({2, 2}, {}, {0, 0})), {rnd({2, 2, 4, 4})}},
                         {"k3s2p1_incl", pool(pool_opts({3, 3}, {2, 2}, {1, 1})), {rnd({1, 2, 5, 5})}},
                         {"k3s2p1_excl", pool(pool_opts({3, 3}, {2, 2}, {1, 1}, {1, 1}, false, false)), {rnd({1, 2, 5, 5})}},
                         {"ceil", pool(pool_opts({2, 2}, {2, 2}, {0, 0}, {1, 1}, true)), {rnd({1, 1, 5, 5})}},
                         {"rect", pool(pool_opts({2, 3}, {1, 2}, {1, 1})), {rnd({1, 2, 4, 5})}}};
       }},
      {"dropout",
       [] {
         // A fresh generator per call: the mask is the same in every evaluation.
         return CaseList{unary_case("train_p0.4", [](const Tensor& x) { Generator g(5); return dropout(x, 0.4, true, &g); }, rnd({4, 5})),
                         unary_case("train_p0", [](const Tensor& x) { Generator g(5); return dropout(x, 0.0, true, &g); }, rnd({3})),
                         unary_case("eval", [](const Tensor& x) { return dropout(x, 0.5, false); }, rnd({2, 3}))};
       }},
      // losses
      {"mse_loss",
       [] {
         CaseList cs;
         for (Reduction r : kReductions)
           cs.push_back({reduction_name(r), [r](const Inputs& in) { return mse_loss(in[0], in[1], r); }, {rnd({3, 4}), rnd({3, 4})}});
         return cs;
       }},
      {"l1_loss",
       [] {
         CaseList cs;
         for (Reduction r : kReductions) {
           Tensor x = rnd({3, 4});
           std::vector<double> t = test::values_f64(x);
           for (size_t i = 0; i < t.size(); ++i) t[i] += (i % 2 ? 0.2 : -0.3) + 0.5 * next_unit() * (i % 2 ? 1 : -1);
           cs.push_back({reduction_name(r), [r](const Inputs& in) { return l1_loss(in[0], in[1], r); }, {x, leaf(t, {3, 4})}});
         }
         return cs;
       }},
      {"smooth_l1_loss",
       [] {
         CaseList cs;
         for (double beta : {1.0, 0.5}) {
           for (Reduction r : kReductions) {
             // |x - t| in bands away from 0 and from beta
             Tensor x = rnd({3, 4});
             std::vector<double> t = test::values_f64(x);
             const double gaps[] = {0.2 * beta, 0.7 * beta, 1.5 * beta, 2.5 * beta};
             for (size_t i = 0; i < t.size(); ++i) t[i] += gaps[i % 4] * (i % 3 ? 1 : -1);
             cs.push_back({std::string(reduction_name(r)) + "_beta" + std::to_string(beta),
                           [r, beta](const Inputs& in) { return smooth_l1_loss(in[0], in[1], r, beta); }, {x, leaf(t, {3, 4})}});
           }
         }
         return cs;
       }},
      {"binary_cross_entropy",
       [] {
         CaseList cs;
         Tensor w = constant({0.5, 1.0, 2.0, 1.5}, {4});
         for (Reduction r : kReductions) {
           cs.push_back({reduction_name(r), [r](const Inputs& in) { return binary_cross_entropy(in[0], in[1], r); },
                         {rnd({3, 4}, 0.1, 0.9), rnd({3, 4}, 0, 1)}});
           cs.push_back({std::string(reduction_name(r)) + "_weight",
                         [r, w](const Inputs& in) { return binary_cross_entropy(in[0], in[1], r, w); },
                         {rnd({3, 4}, 0.1, 0.9), constant(uniform_values(12, 0, 1), {3, 4})}});
         }
         return cs;
       }},
      {"binary_cross_entropy_with_logits",
       [] {
         CaseList cs;
         Tensor w = constant({0.5, 1.0, 2.0, 1.5}, {4});
         Tensor pw = constant({2.0, 0.5, 1.0, 3.0}, {4});
         for (Reduction r : kReductions) {
           cs.push_back({reduction_name(r),
                         [r](const Inputs& in) { return binary_cross_entropy_with_logits(in[0], in[1], r); },
                         {rnd({3, 4}, -4, 4), rnd({3, 4}, 0, 1)}});
           cs.push_back({std::string(reduction_name(r)) + "_weight_posweight",
                         [r, w, pw](const Inputs& in) { return binary_cross_entropy_with_logits(in[0], in[1], r, w, pw); },
                         {rnd({3, 4}, -4, 4), rnd({3, 4}, 0, 1)}});
         }
         return cs;
       }},
      {"nll_loss",
       [] {
         CaseList cs;
         Tensor w = constant({0.5, 1.0, 2.0, 1.5}, {4});
         Tensor t = indices({0, 3, 1, 2, 3}, {5});
         Tensor t_ign = indices({0, -100, 1, 2, 3}, {5});
         Tensor t_sp = indices({0, 3, 1, 2, 2, 1, 0, 1, 3, 3, 2, 0}, {2, 2, 3});
         for (Reduction r : kReductions) {
           const std::string rn = reduction_name(r);
           cs.push_back({rn, [r, t](const Inputs& in) { return nll_loss(in[0], t, r); }, {rnd({5, 4}, -3, 0)}});
           cs.push_back({rn + "_weight_ignore",
                         [r, t_ign, w](const Inputs& in) { return nll_loss(in[0], t_ign, r, -100, w); }, {rnd({5, 4}, -3, 0)}});
           cs.push_back({rn + "_ignore_class2",
                         [r, t](const Inputs& in) { return nll_loss(in[0], t, r, 2, Tensor()); }, {rnd({5, 4}, -3, 0)}});
           cs.push_back({rn + "_spatial_weight",
                         [r, t_sp, w](const Inputs& in) { return nll_loss(in[0], t_sp, r, -100, w); }, {rnd({2, 4, 2, 3}, -3, 0)}});
         }
         return cs;
       }},
      {"cross_entropy",
       [] {
         CaseList cs;
         Tensor w = constant({0.5, 1.0, 2.0, 1.5}, {4});
         Tensor t = indices({0, 3, 1, 2, 3}, {5});
         Tensor t_sp = indices({0, 3, 1, 2, 2, 1, 0, 1, 3, 3, 2, 0}, {2, 2, 3});
         for (Reduction r : kReductions) {
           const std::string rn = reduction_name(r);
           cs.push_back({rn, [r, t](const Inputs& in) { return cross_entropy(in[0], t, r); }, {rnd({5, 4}, -2, 2)}});
           cs.push_back({rn + "_smooth_weight",
                         [r, t, w](const Inputs& in) { return cross_entropy(in[0], t, r, -100, 0.2, w); }, {rnd({5, 4}, -2, 2)}});
           cs.push_back({rn + "_ignore3_smooth",
                         [r, t](const Inputs& in) { return cross_entropy(in[0], t, r, 3, 0.1); }, {rnd({5, 4}, -2, 2)}});
           cs.push_back({rn + "_spatial",
                         [r, t_sp, w](const Inputs& in) { return cross_entropy(in[0], t_sp, r, -100, 0.0, w); }, {rnd({2, 4, 2, 3}, -2, 2)}});
         }
         return cs;
       }},
      // joining and indexing
      {"cat",
       [] {
         return CaseList{{"dim0", [](const Inputs& in) { return cat({in[0], in[1], in[2]}, 0); }, {rnd({2, 3}), rnd({1, 3}), rnd({3, 3})}},
                         {"dim-1", [](const Inputs& in) { return cat({in[0], in[1]}, -1); }, {rnd({2, 2, 3}), rnd({2, 2, 1})}},
                         {"self", [](const Inputs& in) { return cat({in[0], in[0].t()}, 1); }, {rnd({3, 3})}}};
       }},
      {"stack",
       [] {
         return CaseList{{"dim0", [](const Inputs& in) { return stack({in[0], in[1]}, 0); }, {rnd({2, 3}), rnd({2, 3})}},
                         {"dim2", [](const Inputs& in) { return stack({in[0], in[1], in[2]}, 2); }, {rnd({2, 3}), rnd({2, 3}), rnd({2, 3})}}};
       }},
      {"index_select",
       [] {
         Tensor i0 = indices({2, 0, 2, 1}, {4});
         Tensor i1 = indices({1, 1, 0}, {3});
         return CaseList{unary_case("dim0_repeats", [i0](const Tensor& x) { return index_select(x, 0, i0); }, rnd({3, 4})),
                         unary_case("dim1", [i1](const Tensor& x) { return index_select(x, 1, i1); }, rnd({2, 3, 2}))};
       }},
      {"embedding",
       [] {
         Tensor idx = indices({4, 0, 4, 2, 1, 4}, {2, 3});
         return CaseList{unary_case("repeats", [idx](const Tensor& w) { return embedding(w, idx); }, rnd({5, 3}))};
       }},
      // views and copies
      {"view", [] { return CaseList{unary_case("x", [](const Tensor& x) { return mul(x.view({4, -1}), 2.0); }, rnd({2, 3, 2}))}; }},
      {"reshape",
       [] {
         return CaseList{unary_case("view", [](const Tensor& x) { return x.reshape({3, 4}); }, rnd({2, 6})),
                         unary_case("copy", [](const Tensor& x) { return x.t().reshape({12}); }, rnd({3, 4}))};
       }},
      {"permute", [] { return CaseList{unary_case("x", [](const Tensor& x) { return mul(x.permute({2, 0, 1}), x.permute({2, 0, 1})); }, rnd({2, 3, 4}))}; }},
      {"transpose", [] { return CaseList{unary_case("x", [](const Tensor& x) { return matmul(x.transpose(0, 1), x); }, rnd({3, 2}))}; }},
      {"narrow", [] { return CaseList{unary_case("x", [](const Tensor& x) { return x.narrow(1, 1, 2); }, rnd({3, 4}))}; }},
      {"slice",
       [] {
         return CaseList{unary_case("step2", [](const Tensor& x) { return x.slice(1, 0, 5, 2); }, rnd({2, 5})),
                         unary_case("neg_start", [](const Tensor& x) { return x.slice(0, -2, 4); }, rnd({4, 2}))};
       }},
      {"select", [] { return CaseList{unary_case("x", [](const Tensor& x) { return mul(x.select(0, 1), x.select(0, -1)); }, rnd({3, 4}))}; }},
      {"expand",
       [] {
         return CaseList{unary_case("dims", [](const Tensor& x) { return x.expand({3, 4}); }, rnd({3, 1})),
                         unary_case("leading", [](const Tensor& x) { return x.expand({2, 3, 4}); }, rnd({1, 4}))};
       }},
      {"squeeze",
       [] {
         return CaseList{unary_case("all", [](const Tensor& x) { return x.squeeze(); }, rnd({1, 3, 1, 2})),
                         unary_case("dim", [](const Tensor& x) { return x.squeeze(2); }, rnd({1, 3, 1, 2}))};
       }},
      {"unsqueeze", [] { return CaseList{unary_case("x", [](const Tensor& x) { return x.unsqueeze(1).expand({3, 2, 4}); }, rnd({3, 4}))}; }},
      {"flatten", [] { return CaseList{unary_case("x", [](const Tensor& x) { return x.transpose(0, 2).flatten(1); }, rnd({2, 3, 4}))}; }},
      {"contiguous", [] { return CaseList{unary_case("x", [](const Tensor& x) { return x.t().contiguous(); }, rnd({3, 4}))}; }},
      {"clone", [] { return CaseList{unary_case("x", [](const Tensor& x) { return mul(x.clone(), x); }, rnd({3, 4}))}; }},
      {"to_dtype",
       [] {
         // through f32: the perturbation must be large against f32 rounding
         GradCase c = unary_case("f64_f32", [](const Tensor& x) { return x.to(DType::f32); }, rnd({3, 4}));
         c.eps = 1e-3;
         c.atol = 1e-3;
         c.rtol = 1e-3;
         return CaseList{c};
       }},
  };
  return table;
}

// --- tests -------------------------------------------------------------------------------------

class Gradcheck : public ::testing::TestWithParam<std::string> {};

TEST_P(Gradcheck, MatchesCentralDifferences) {
  const std::string& op = GetParam();
  const CaseList cases = gradcheck_table().at(op)();
  ASSERT_FALSE(cases.empty());
  for (const GradCase& c : cases) {
    try {
      EXPECT_TRUE(test::gradcheck(op + "/" + c.label, c.f, c.inputs, c.eps, c.atol, c.rtol));
    } catch (const std::exception& e) {
      ADD_FAILURE() << op << "/" << c.label << " threw: " << e.what();
    }
  }
}

std::vector<std::string> table_names() {
  std::vector<std::string> names;
  for (const auto& [name, make] : gradcheck_table()) names.push_back(name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(Ops, Gradcheck, ::testing::ValuesIn(table_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(GradcheckCoverage, EveryDifferentiableOpHasACheck) {
  std::set<std::string> registered;
  std::string missing;
  for (const OpInfo& op : op_registry()) {
    registered.insert(op.name);
    if (op.differentiable && !gradcheck_table().count(op.name)) missing += std::string(" ") + op.name;
  }
  EXPECT_TRUE(missing.empty()) << "differentiable ops without a gradient check in test_gradcheck.cpp:" << missing;
  std::string stale;
  for (const auto& [name, make] : gradcheck_table())
    if (!registered.count(name)) stale += " " + name;
  EXPECT_TRUE(stale.empty()) << "gradient checks for names not in op_registry() (renamed or removed ops?):" << stale;
}

// Ops the registry marks non-differentiable: their outputs carry no history even when the input
// requires grad, and they have the documented values. A new such op must be added here.
TEST(GradcheckCoverage, NonDifferentiableOpsRecordNothing) {
  const Tensor a = test::make_tensor({-2, 0, 3, 1}, {4}, DType::f64, true);
  const Tensor b = test::make_tensor({1, 0, 3, 2}, {4}, DType::f64, true);
  const std::map<std::string, std::pair<std::function<Tensor()>, std::vector<double>>> cases = {
      {"sign", {[&] { return sign(a); }, {-1, 0, 1, 1}}},
      {"eq", {[&] { return eq(a, b); }, {0, 1, 1, 0}}},
      {"gt", {[&] { return gt(a, b); }, {0, 0, 0, 0}}},
      {"lt", {[&] { return lt(a, b); }, {1, 0, 0, 1}}},
      {"ge", {[&] { return ge(a, b); }, {0, 1, 1, 0}}},
      {"le", {[&] { return le(a, b); }, {1, 1, 1, 1}}},
      {"argmax", {[&] { return argmax(a, 0); }, {2}}},
  };
  for (const OpInfo& op : op_registry()) {
    if (op.differentiable) continue;
    SCOPED_TRACE(op.name);
    auto it = cases.find(op.name);
    if (it == cases.end()) {
      ADD_FAILURE() << "non-differentiable op " << op.name << " has no check in test_gradcheck.cpp";
      continue;
    }
    const Tensor out = it->second.first();
    EXPECT_FALSE(out.requires_grad());
    EXPECT_EQ(out.grad_fn(), nullptr);
    EXPECT_EQ(test::values_f64(out), it->second.second);
  }
  for (const char* cmp : {"eq", "gt", "lt", "ge", "le"}) EXPECT_EQ(cases.at(cmp).first().dtype(), DType::b8) << cmp;
  EXPECT_EQ(cases.at("argmax").first().dtype(), DType::i64);
}

// The checker itself must catch a wrong gradient, not only pass right ones.
TEST(GradcheckCoverage, DetectsAWrongGradient) {
  Tensor x = test::make_tensor({0.5, -1.0, 2.0}, {3}, DType::f64, true);
  auto wrong = [](const Inputs& in) {
    // forward x^2, backward claims 3x (instead of 2x)
    Tensor out = mul(in[0].detach(), in[0].detach());
    if (autograd::any_requires_grad(in)) {
      Tensor xs = in[0].detach();
      autograd::record("wrong_square", in, out, [xs](const Tensor& g) -> autograd::TensorList { return {mul(mul(g, xs), 3.0)}; });
    }
    return out;
  };
  const ::testing::AssertionResult r = test::gradcheck("wrong_square", wrong, {x});
  EXPECT_FALSE(r);
  EXPECT_NE(std::string(r.message()).find("wrong_square"), std::string::npos) << r.message();
  EXPECT_TRUE(test::gradcheck([](const Inputs& in) { return mul(in[0], in[0]); }, {x}));
}

}  // namespace
}  // namespace ember
