// Ember's ops against PyTorch 1.13 reference values (tests/reference/gen_ops.py): softmax family,
// activations, every loss with each reduction, matmul/linear. Each case runs in f32 (rtol 1e-5)
// and f64 (rtol 1e-10), forward values and the input gradients of sum(out * g).
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "tests/support/check.h"

namespace ember {
namespace {

using test::allclose;
using test::bit_equal;
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

// --- special values and empty tensors (expected values as PyTorch 1.13 gives them) ----------------

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

class OpsSpecialValues : public ::testing::TestWithParam<DType> {
 protected:
  Tensor t(const std::vector<double>& v, const Shape& s) const { return test::make_tensor(v, s, GetParam()); }
  Tensor t(const std::vector<double>& v) const { return t(v, {static_cast<int64_t>(v.size())}); }
  Tensor expect(const std::vector<double>& v) const { return test::make_tensor(v, {static_cast<int64_t>(v.size())}, DType::f64); }
  double rtol() const { return GetParam() == DType::f32 ? 1e-6 : 1e-12; }
};

TEST_P(OpsSpecialValues, SoftmaxWithInfinities) {
  EXPECT_TRUE(allclose(softmax(t({0, -kInf, 1}), 0), expect({0.2689414213699951, 0, 0.7310585786300049}), rtol(), 0));
  EXPECT_TRUE(allclose(log_softmax(t({0, -kInf, 1}), 0), expect({-1.3132616875182228, -kInf, -0.31326168751822286}), rtol(), 0));
  EXPECT_TRUE(allclose(softmax(t({-kInf, -kInf}), 0), expect({kNaN, kNaN})));
  EXPECT_TRUE(allclose(log_softmax(t({1e4, 0}), 0), expect({0, -1e4}), rtol(), 0));
}

TEST_P(OpsSpecialValues, NaNPropagates) {
  EXPECT_TRUE(std::isnan(max(t({1, kNaN, 3})).item()));
  EXPECT_EQ(argmax(t({1, kNaN, 3}), 0).item<int64_t>(), 1);
  const ValuesIndices mi = max(t({1, kNaN, 3}, {1, 3}), 1);
  EXPECT_TRUE(std::isnan(mi.values.item()));
  EXPECT_EQ(mi.indices.item<int64_t>(), 1);
  EXPECT_TRUE(allclose(maximum(t({1, kNaN}), t({kNaN, 0})), expect({kNaN, kNaN})));
  EXPECT_TRUE(allclose(minimum(t({1, kNaN}), t({kNaN, 0})), expect({kNaN, kNaN})));
  EXPECT_TRUE(allclose(relu(t({kNaN, -1})), expect({kNaN, 0})));
  EXPECT_TRUE(allclose(clamp(t({kNaN, 5}), -1.0, 1.0), expect({kNaN, 1})));
  EXPECT_TRUE(std::isnan(sum(t({1, kNaN})).item()));
}

TEST_P(OpsSpecialValues, ArgmaxTiesPickTheFirst) {
  EXPECT_EQ(argmax(t({1, 3, 3, 2}), 0).item<int64_t>(), 1);
  EXPECT_EQ(max(t({5, 1, 5}, {1, 3}), 1).indices.item<int64_t>(), 0);
}

TEST_P(OpsSpecialValues, ElementwiseLimits) {
  EXPECT_TRUE(allclose(sigmoid(t({-kInf, kInf})), expect({0, 1}), 0, 0));
  EXPECT_TRUE(allclose(tanh(t({-kInf, kInf})), expect({-1, 1}), 0, 0));
  EXPECT_TRUE(allclose(log(t({0, -1})), expect({-kInf, kNaN})));
  EXPECT_TRUE(allclose(sqrt(t({-1})), expect({kNaN})));
  EXPECT_TRUE(allclose(exp(t({1000, -kInf})), expect({kInf, 0})));
  EXPECT_TRUE(allclose(pow(t({0, -8, 2}), t({0, 1.0 / 3, -kInf})), expect({1, kNaN, 0})));
  EXPECT_TRUE(allclose(div(t({1, 0, -1}), t({0, 0, 0})), expect({kInf, kNaN, -kInf})));
  EXPECT_TRUE(allclose(gelu(t({kInf})), expect({kInf})));
  EXPECT_TRUE(allclose(leaky_relu(t({-kInf})), expect({-kInf})));
  EXPECT_TRUE(allclose(binary_cross_entropy_with_logits(t({100, -100, 0}), t({0, 1, 0.5}), Reduction::None),
                       expect({100, 100, 0.6931471805599453}), rtol(), 0));
}

TEST_P(OpsSpecialValues, LossesWithEveryTargetIgnored) {
  const Tensor lp = log_softmax(t({0.1, 0.2, 0.3, 0.4, 0.5, 0.6}, {2, 3}), 1);
  const Tensor ignored = from_vector(std::vector<int64_t>{-100, -100}, {2});
  EXPECT_TRUE(std::isnan(nll_loss(lp, ignored).item()));  // 0 / 0, as PyTorch
  EXPECT_EQ(nll_loss(lp, ignored, Reduction::Sum).item(), 0.0);
  EXPECT_TRUE(allclose(nll_loss(lp, ignored, Reduction::None), expect({0, 0}), 0, 0));
  EXPECT_TRUE(std::isnan(cross_entropy(lp, ignored).item()));
  EXPECT_TRUE(std::isnan(cross_entropy(lp, ignored, Reduction::Mean, -100, 0.1).item()));
}

TEST_P(OpsSpecialValues, EmptyTensors) {
  const Tensor e = t({}, {0, 3});
  EXPECT_EQ(sum(e).item(), 0.0);
  EXPECT_TRUE(allclose(sum(e, {0}), expect({0, 0, 0}), 0, 0));
  EXPECT_TRUE(std::isnan(mean(t({}, {0})).item()));
  EXPECT_EQ(add(e, e).shape(), Shape({0, 3}));
  const Tensor mm = matmul(t({}, {3, 0}), t({}, {0, 5}));
  EXPECT_EQ(mm.shape(), Shape({3, 5}));
  EXPECT_TRUE(allclose(mm, test::make_tensor(std::vector<double>(15, 0.0), {3, 5}), 0, 0));
  EXPECT_TRUE(std::isnan(mse_loss(t({}), t({})).item()));
  EXPECT_EQ(mse_loss(t({}), t({}), Reduction::Sum).item(), 0.0);
  EXPECT_EQ(softmax(e, 1).shape(), Shape({0, 3}));
  EXPECT_EQ(cat({e, t({1, 2, 3}, {1, 3})}, 0).shape(), Shape({1, 3}));
}

TEST_P(OpsSpecialValues, LongReductionsStayAccurate) {
  // 0.1 summed 2^23 + 3 times: a naive f32 accumulator is off by several percent.
  const int64_t n = (int64_t{1} << 23) + 3;
  const double v = GetParam() == DType::f32 ? static_cast<double>(0.1f) : 0.1;
  const Tensor x = full({n}, 0.1, GetParam());
  EXPECT_NEAR(sum(x).item() / (v * static_cast<double>(n)), 1.0, 1e-6);
  EXPECT_NEAR(mean(x).item() / v, 1.0, 1e-6);
  EXPECT_NEAR(mean(x.reshape({-1, 1}), {0}).item() / v, 1.0, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, OpsSpecialValues, ::testing::Values(DType::f32, DType::f64),
                         [](const ::testing::TestParamInfo<DType>& info) { return std::string(dtype_name(info.param)); });

// --- the test helpers themselves ---------------------------------------------------------------

TEST(FixtureLoader, ParsesEveryDtypeAndSpecialValues) {
  const Fixture fx = test::parse_fixture(
      "# comment\n"
      "tensor a f32 2 2 3\n 1 2 3\n4 5 -6.5\n"
      "  # indented comment\n"
      "tensor s f64 0\n0.10000000000000001\n"
      "tensor h f16 1 3 nan inf -inf\n"
      "tensor b bf16 1 2 1.5 -0\n"
      "tensor i i64 1 2 9007199254740993 -5\n"
      "tensor j i32 1 1 -2147483648\n"
      "tensor u u8 1 2 0 255\n"
      "tensor q bool 1 3 1 0 true\n"
      "tensor z f32 2 0 4\n"
      "scalar lr 0.25\n",
      "inline");
  EXPECT_EQ(fx["a"].shape(), Shape({2, 3}));
  EXPECT_EQ(test::values_f64(fx["a"]), (std::vector<double>{1, 2, 3, 4, 5, -6.5}));
  EXPECT_EQ(fx["s"].dim(), 0);
  EXPECT_EQ(fx["s"].item(), 0.1);
  const std::vector<double> h = test::values_f64(fx["h"]);
  EXPECT_TRUE(std::isnan(h[0]));
  EXPECT_EQ(h[1], kInf);
  EXPECT_EQ(h[2], -kInf);
  EXPECT_EQ(fx["b"].dtype(), DType::bf16);
  EXPECT_TRUE(std::signbit(test::values_f64(fx["b"])[1]));
  EXPECT_EQ(fx["i"].to_vector<int64_t>()[0], 9007199254740993LL);  // exact beyond 2^53
  EXPECT_EQ(test::values_f64(fx["j"])[0], -2147483648.0);
  EXPECT_EQ(test::values_f64(fx["u"]), (std::vector<double>{0, 255}));
  EXPECT_EQ(fx["q"].dtype(), DType::b8);
  EXPECT_EQ(test::values_f64(fx["q"]), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(fx["z"].numel(), 0);
  EXPECT_EQ(fx.scalar("lr"), 0.25);
}

TEST(FixtureLoader, ErrorsNameFileAndLine) {
  auto error_of = [](const std::string& text) -> std::string {
    try {
      test::parse_fixture(text, "bad.txt");
    } catch (const std::exception& e) {
      return e.what();
    }
    return "";
  };
  auto expect_has = [](const std::string& msg, const std::vector<std::string>& parts) {
    EXPECT_FALSE(msg.empty()) << "no error";
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  };
  expect_has(error_of("tensor a f32 1 3\n1 2\n"), {"bad.txt:", "'a'", "expects 3 values, found 2"});
  expect_has(error_of("tensor a f32 1 2\n1 2\ntensor b f32 1 2\n1\nscalar c 1\n"), {"bad.txt:5:", "'b'", "found 1"});
  expect_has(error_of("# x\ntensor a f8 1 1\n1\n"), {"bad.txt:2:", "unknown dtype 'f8'"});
  expect_has(error_of("tensor a f32 1 2\n1 abc\n"), {"bad.txt:2:", "'abc'"});
  expect_has(error_of("\n\nmatrix a\n"), {"bad.txt:3:", "'matrix'"});
  expect_has(error_of("scalar x 1\nscalar x 2\n"), {"bad.txt:2:", "duplicate name 'x'"});
  expect_has(error_of("tensor a i64 1 1\n1.5\n"), {"bad.txt:2:", "integer"});
  expect_has(error_of("tensor a u8 1 1\n256\n"), {"bad.txt:2:", "256"});
  expect_has(error_of("tensor a f32 1 -2\n"), {"bad.txt:1:", "negative dimension"});
  expect_has(error_of("tensor a f32"), {"bad.txt:1:", "end of file"});
  const std::string missing = error_of("");  // parses fine: empty fixture
  EXPECT_TRUE(missing.empty());
  try {
    test::load_fixture("fixtures/does_not_exist.txt");
    ADD_FAILURE() << "no error for a missing file";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("does_not_exist.txt"), std::string::npos) << e.what();
  }
  const Fixture fx = test::parse_fixture("scalar x 1\n", "f");
  try {
    (void)fx["y"];
    ADD_FAILURE() << "no error for a missing tensor";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("'y'"), std::string::npos) << e.what();
  }
}

TEST(CheckHelpers, AllcloseReportsTheWorstElement) {
  const Tensor e = test::make_tensor({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(allclose(e, e, 0, 0));
  EXPECT_TRUE(allclose(test::make_tensor({1, 2, 3, 4, 5, 6.000001}, {2, 3}, DType::f32), e, 1e-5, 0));
  const ::testing::AssertionResult r = allclose(test::make_tensor({1, 2.1, 3, 4, 5, 9}, {2, 3}), e);
  EXPECT_FALSE(r);
  const std::string m = r.message();
  EXPECT_NE(m.find("2 of 6"), std::string::npos) << m;
  EXPECT_NE(m.find("(1, 2)"), std::string::npos) << m;  // worst: 9 vs 6
  EXPECT_NE(m.find("actual 9"), std::string::npos) << m;
  EXPECT_NE(m.find("expected 6"), std::string::npos) << m;
  EXPECT_FALSE(allclose(test::make_tensor({1, 2}, {2}), test::make_tensor({1, 2}, {1, 2})));
  EXPECT_FALSE(allclose(test::make_tensor({kNaN}, {1}), test::make_tensor({1}, {1})));
  EXPECT_TRUE(allclose(test::make_tensor({kNaN, kInf}, {2}), test::make_tensor({kNaN, kInf}, {2})));
  EXPECT_FALSE(allclose(test::make_tensor({kInf}, {1}), test::make_tensor({-kInf}, {1})));
  // strided views are read through their strides
  const Tensor tt = e.t();
  EXPECT_TRUE(allclose(tt, test::make_tensor({1, 4, 2, 5, 3, 6}, {3, 2}), 0, 0));
}

TEST(CheckHelpers, BitEqualComparesDtypeShapeAndBits) {
  const Tensor a = test::make_tensor({0.0, 1.5}, {2}, DType::f32);
  EXPECT_TRUE(bit_equal(a, test::make_tensor({0.0, 1.5}, {2}, DType::f32)));
  EXPECT_FALSE(bit_equal(a, test::make_tensor({-0.0, 1.5}, {2}, DType::f32)));
  EXPECT_FALSE(bit_equal(a, test::make_tensor({0.0, 1.5}, {2}, DType::f64)));
  EXPECT_FALSE(bit_equal(a, test::make_tensor({0.0, 1.5}, {1, 2}, DType::f32)));
  EXPECT_TRUE(bit_equal(test::make_tensor({1, 2, 3, 4}, {2, 2}).t(), test::make_tensor({1, 3, 2, 4}, {2, 2})));
}

TEST(CheckHelpers, GradcheckHandlesStridedLeavesAndReportsContext) {
  // a leaf that is a transposed view of a detached base
  const Tensor base = test::make_tensor({0.3, -0.7, 1.1, 0.2, 0.9, -0.4}, {2, 3});
  Tensor x = base.t().detach();
  x.requires_grad_(true);
  ASSERT_FALSE(x.is_contiguous());
  EXPECT_TRUE(test::gradcheck("exp_of_view", [](const std::vector<Tensor>& in) { return exp(in[0]); }, {x}));
  // an op whose backward forgets a factor: the message names the context, op and element
  Tensor y = test::make_tensor({0.5, 1.5}, {2}, DType::f64, true);
  const ::testing::AssertionResult r = test::gradcheck(
      "scaled", [](const std::vector<Tensor>& in) { return mul(in[0], in[0].detach()); }, {y});
  EXPECT_FALSE(r);  // d(x * stop_grad(x)) is x, numerically 2x
  const std::string m = r.message();
  EXPECT_NE(m.find("gradcheck [scaled]"), std::string::npos) << m;
  EXPECT_NE(m.find("mul"), std::string::npos) << m;
  EXPECT_NE(m.find("2 of 2 gradient elements mismatch"), std::string::npos) << m;
  EXPECT_NE(m.find("analytic"), std::string::npos) << m;
  EXPECT_FALSE(test::gradcheck([](const std::vector<Tensor>& in) { return in[0]; }, {test::make_tensor({1}, {1})}));
}

}  // namespace
}  // namespace ember
