// Ember's ops against PyTorch 1.13 reference values (tests/reference/gen_ops.py): softmax family,
// activations, every loss with each reduction, matmul/linear. Each case runs in f32 (rtol 1e-5)
// and f64 (rtol 1e-10), forward values and the input gradients of sum(out * g).
#include <functional>
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "runtime/autograd.h"
#include "runtime/ops.h"
#include "tests/support/check.h"

namespace ember {
namespace {

using test::allclose;
using test::Fixture;
using Fields = std::map<std::string, Tensor>;
using OpFn = std::function<Tensor(const Fields&, const Fixture&, const std::string&)>;

struct Tol {
  double rtol, atol;
};
Tol tol_for(DType dt) { return dt == DType::f32 ? Tol{1e-5, 1e-6} : Tol{1e-10, 1e-12}; }

// Case prefixes "<op>/<case>" of fixture entries "<op>/<case>/out".
std::vector<std::string> cases_of(const Fixture& fx, const std::string& op) {
  std::vector<std::string> out;
  const std::string head = op + "/";
  for (auto it = fx.tensors.lower_bound(head); it != fx.tensors.end() && it->first.rfind(head, 0) == 0; ++it) {
    const std::string& name = it->first;
    if (name.size() > 4 && name.compare(name.size() - 4, 4, "/out") == 0) out.push_back(name.substr(0, name.size() - 4));
  }
  return out;
}

bool has_scalar(const Fixture& fx, const std::string& name) { return fx.scalars.count(name) > 0; }

Reduction reduction_of(const Fixture& fx, const std::string& p) {
  switch (static_cast<int>(fx.scalar(p + "/reduction"))) {
    case 0: return Reduction::None;
    case 1: return Reduction::Mean;
    default: return Reduction::Sum;
  }
}

Tensor field(const Fields& f, const std::string& k) {
  auto it = f.find(k);
  return it == f.end() ? Tensor() : it->second;
}

// Runs every case of `op` in dtype dt: inputs are the case's tensors other than out/g and the
// gradient fields; grads maps an input name to its expected-gradient field (checked if present).
int run_cases(const Fixture& fx, const std::string& op, DType dt, const OpFn& fn,
              const std::map<std::string, std::string>& grads) {
  const Tol tol = tol_for(dt);
  std::set<std::string> grad_fields;
  for (const auto& [in, g] : grads) grad_fields.insert(g);
  int n = 0;
  for (const std::string& p : cases_of(fx, op)) {
    SCOPED_TRACE(p + " in " + dtype_name(dt));
    Fields in;
    const std::string head = p + "/";
    for (auto it = fx.tensors.lower_bound(head); it != fx.tensors.end() && it->first.rfind(head, 0) == 0; ++it) {
      const std::string key = it->first.substr(head.size());
      if (key == "out" || key == "g" || grad_fields.count(key)) continue;
      const Tensor& t = it->second;
      const bool needs_grad = grads.count(key) && fx.tensors.count(head + grads.at(key));
      in[key] = is_floating(t.dtype()) ? test::make_tensor(test::values_f64(t), t.shape(), dt, needs_grad) : t;
    }
    Tensor out;
    try {
      out = fn(in, fx, p);
    } catch (const std::exception& e) {
      ADD_FAILURE() << p << " threw: " << e.what();
      continue;
    }
    if (!out.defined()) {
      ADD_FAILURE() << p << " returned an undefined tensor";
      continue;
    }
    EXPECT_EQ(out.dtype(), dt);
    EXPECT_TRUE(allclose(out, fx[p + "/out"], tol.rtol, tol.atol)) << p << " forward";
    ++n;
    if (!fx.tensors.count(p + "/g")) continue;
    const Tensor& g = fx[p + "/g"];
    try {
      out.backward(test::make_tensor(test::values_f64(g), g.shape(), dt));
    } catch (const std::exception& e) {
      ADD_FAILURE() << p << " backward threw: " << e.what();
      continue;
    }
    for (const auto& [name, gname] : grads) {
      if (!fx.tensors.count(head + gname)) continue;
      const Tensor& x = in.at(name);
      if (!x.grad().defined()) {
        ADD_FAILURE() << p << ": no gradient for " << name;
        continue;
      }
      EXPECT_TRUE(allclose(x.grad(), fx[head + gname], tol.rtol, tol.atol)) << p << " gradient of " << name;
    }
  }
  return n;
}

class OpsReference : public ::testing::TestWithParam<DType> {};

TEST_P(OpsReference, SoftmaxAndLogSoftmax) {
  const Fixture fx = test::load_fixture("fixtures/ops_softmax.txt");
  auto fn_for = [](bool log) {
    return [log](const Fields& in, const Fixture& fx, const std::string& p) {
      const auto dim = static_cast<int64_t>(fx.scalar(p + "/dim"));
      return log ? log_softmax(in.at("x"), dim) : softmax(in.at("x"), dim);
    };
  };
  EXPECT_EQ(run_cases(fx, "softmax", GetParam(), fn_for(false), {{"x", "dx"}}), 13);
  EXPECT_EQ(run_cases(fx, "log_softmax", GetParam(), fn_for(true), {{"x", "dx"}}), 13);
}

TEST_P(OpsReference, Activations) {
  const Fixture fx = test::load_fixture("fixtures/ops_activations.txt");
  const DType dt = GetParam();
  const std::map<std::string, std::string> g{{"x", "dx"}};
  EXPECT_EQ(run_cases(fx, "gelu", dt,
                      [](const Fields& in, const Fixture& fx, const std::string& p) {
                        return gelu(in.at("x"), fx.scalar(p + "/approximate") == 1 ? "tanh" : "none");
                      },
                      g),
            4);
  EXPECT_EQ(run_cases(fx, "sigmoid", dt, [](const Fields& in, const Fixture&, const std::string&) { return sigmoid(in.at("x")); }, g), 2);
  EXPECT_EQ(run_cases(fx, "tanh", dt, [](const Fields& in, const Fixture&, const std::string&) { return tanh(in.at("x")); }, g), 2);
  EXPECT_EQ(run_cases(fx, "relu", dt, [](const Fields& in, const Fixture&, const std::string&) { return relu(in.at("x")); }, g), 2);
  EXPECT_EQ(run_cases(fx, "leaky_relu", dt,
                      [](const Fields& in, const Fixture& fx, const std::string& p) {
                        return leaky_relu(in.at("x"), fx.scalar(p + "/slope"));
                      },
                      g),
            4);
}

TEST_P(OpsReference, RegressionLosses) {
  const Fixture fx = test::load_fixture("fixtures/ops_losses.txt");
  const DType dt = GetParam();
  const std::map<std::string, std::string> g{{"x", "dx"}};
  EXPECT_EQ(run_cases(fx, "mse_loss", dt,
                      [](const Fields& in, const Fixture& fx, const std::string& p) {
                        return mse_loss(in.at("x"), in.at("target"), reduction_of(fx, p));
                      },
                      g),
            3);
  EXPECT_EQ(run_cases(fx, "l1_loss", dt,
                      [](const Fields& in, const Fixture& fx, const std::string& p) {
                        return l1_loss(in.at("x"), in.at("target"), reduction_of(fx, p));
                      },
                      g),
            3);
  EXPECT_EQ(run_cases(fx, "smooth_l1_loss", dt,
                      [](const Fields& in, const Fixture& fx, const std::string& p) {
                        return smooth_l1_loss(in.at("x"), in.at("target"), reduction_of(fx, p), fx.scalar(p + "/beta"));
                      },
                      g),
            12);
}

TEST_P(OpsReference, BinaryCrossEntropy) {
  const Fixture fx = test::load_fixture("fixtures/ops_losses.txt");
  const DType dt = GetParam();
  const std::map<std::string, std::string> g{{"x", "dx"}};
  EXPECT_EQ(run_cases(fx, "binary_cross_entropy", dt,
                      [](const Fields& in, const Fixture& fx, const std::string& p) {
                        return binary_cross_entropy(in.at("x"), in.at("target"), reduction_of(fx, p),
                                                    field(in, "weight"));
                      },
                      g),
            9);
  EXPECT_EQ(run_cases(fx, "binary_cross_entropy_with_logits", dt,
                      [](const Fields& in, const Fixture& fx, const std::string& p) {
                        return binary_cross_entropy_with_logits(in.at("x"), in.at("target"), reduction_of(fx, p),
                                                                field(in, "weight"), field(in, "pos_weight"));
                      },
                      g),
            12);
}

TEST_P(OpsReference, NllLoss) {
  const Fixture fx = test::load_fixture("fixtures/ops_losses.txt");
  EXPECT_EQ(run_cases(fx, "nll_loss", GetParam(),
                      [](const Fields& in, const Fixture& fx, const std::string& p) {
                        const int64_t ignore =
                            has_scalar(fx, p + "/ignore_index") ? static_cast<int64_t>(fx.scalar(p + "/ignore_index")) : -100;
                        return nll_loss(in.at("x"), in.at("target"), reduction_of(fx, p), ignore, field(in, "weight"));
                      },
                      {{"x", "dx"}}),
            36);
}

TEST_P(OpsReference, CrossEntropy) {
  const Fixture fx = test::load_fixture("fixtures/ops_losses.txt");
  EXPECT_EQ(run_cases(fx, "cross_entropy", GetParam(),
                      [](const Fields& in, const Fixture& fx, const std::string& p) {
                        const int64_t ignore =
                            has_scalar(fx, p + "/ignore_index") ? static_cast<int64_t>(fx.scalar(p + "/ignore_index")) : -100;
                        const double ls = has_scalar(fx, p + "/label_smoothing") ? fx.scalar(p + "/label_smoothing") : 0.0;
                        return cross_entropy(in.at("x"), in.at("target"), reduction_of(fx, p), ignore, ls,
                                             field(in, "weight"));
                      },
                      {{"x", "dx"}}),
            36);
}

TEST_P(OpsReference, Matmul) {
  const Fixture fx = test::load_fixture("fixtures/ops_matmul.txt");
  EXPECT_EQ(run_cases(fx, "matmul", GetParam(),
                      [](const Fields& in, const Fixture&, const std::string&) { return matmul(in.at("a"), in.at("b")); },
                      {{"a", "da"}, {"b", "db"}}),
            12);
}

TEST_P(OpsReference, Linear) {
  const Fixture fx = test::load_fixture("fixtures/ops_matmul.txt");
  EXPECT_EQ(run_cases(fx, "linear", GetParam(),
                      [](const Fields& in, const Fixture&, const std::string&) {
                        return linear(in.at("x"), in.at("weight"), field(in, "bias"));
                      },
                      {{"x", "dx"}, {"weight", "dw"}, {"bias", "dbias"}}),
            5);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, OpsReference, ::testing::Values(DType::f32, DType::f64),
                         [](const ::testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); });

// Matmul on non-contiguous operands (transposed, sliced) gives the same values as on copies.
TEST(OpsReferenceLayout, MatmulOnTransposedViews) {
  const Fixture fx = test::load_fixture("fixtures/ops_matmul.txt");
  const Tensor a = fx["matmul/mm/a"], b = fx["matmul/mm/b"];  // (3, 4) @ (4, 5)
  const Tensor at = a.t().contiguous().t();                      // same values, column-major
  const Tensor bt = b.t().contiguous().t();
  EXPECT_FALSE(at.is_contiguous());
  EXPECT_TRUE(allclose(matmul(at, bt), fx["matmul/mm/out"], 1e-5, 1e-6));
  EXPECT_TRUE(allclose(matmul(a, bt), fx["matmul/mm/out"], 1e-5, 1e-6));
}

}  // namespace
}  // namespace ember
