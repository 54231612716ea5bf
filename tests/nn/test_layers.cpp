// Every layer against PyTorch (fixtures/nn_layers.txt from gen_nn.py): torch's state dict is
// loaded with load_state_dict(strict), then the forward output, the input gradient and every
// parameter gradient of sum(y * gy) must match (f32, rtol 1e-5), as must buffers after forward.
// Also: train/eval behaviour of Dropout, unbatched conv input and the layers' error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <string>

#include "ember/nn/nn.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "tests/support/check.h"

namespace ember {
namespace {

using test::allclose;

const test::Fixture& layers() {
  static const test::Fixture f = test::load_fixture("fixtures/nn_layers.txt");
  return f;
}

// Fixture tensors named PREFIX + key, keyed by key.
std::map<std::string, Tensor> with_prefix(const test::Fixture& f, const std::string& prefix) {
  std::map<std::string, Tensor> out;
  for (auto it = f.tensors.lower_bound(prefix); it != f.tensors.end() && it->first.rfind(prefix, 0) == 0; ++it)
    out.emplace(it->first.substr(prefix.size()), it->second);
  return out;
}

nn::StateDict state_of(const test::Fixture& f, const std::string& prefix) {
  nn::StateDict sd;
  for (auto& [k, t] : with_prefix(f, prefix)) sd.emplace_back(k, t);
  return sd;
}

using test::error_of;

// Loads case NAME into m, runs forward/backward and compares everything the fixture holds.
void check_layer(const std::string& name, nn::Module& m, double rtol = 1e-5, double atol = 1e-6) {
  SCOPED_TRACE(name);
  const test::Fixture& f = layers();
  m.load_state_dict(state_of(f, name + ".sd."));  // strict: torch's names must match exactly
  Tensor x = f[name + ".x"].clone();
  const bool float_input = is_floating(x.dtype());
  if (float_input) x.requires_grad_();
  Tensor y = m.forward(x);
  EXPECT_TRUE(allclose(y, f[name + ".y"], rtol, atol)) << "forward";
  y.backward(f[name + ".gy"]);
  if (float_input) {
    EXPECT_TRUE(allclose(x.grad(), f[name + ".gx"], rtol, atol)) << "input gradient";
  }

  auto grads = with_prefix(f, name + ".grad.");
  auto params = m.named_parameters();
  EXPECT_EQ(grads.size(), params.size()) << "parameter count";
  for (auto& [k, p] : params) {
    ASSERT_TRUE(grads.count(k)) << "torch has no gradient for " << k;
    ASSERT_TRUE(p.grad().defined()) << k;
    EXPECT_TRUE(allclose(p.grad(), grads.at(k), rtol, atol)) << "gradient of " << k;
  }
  auto after = with_prefix(f, name + ".after.");
  auto bufs = m.named_buffers();
  EXPECT_EQ(after.size(), bufs.size()) << "buffer count";
  for (auto& [k, b] : bufs) {
    ASSERT_TRUE(after.count(k)) << k;
    EXPECT_TRUE(allclose(b, after.at(k), rtol, atol)) << "buffer " << k;
  }
}

TEST(Layers, Linear) {
  nn::Linear a(5, 4), b(5, 3), c(5, 3, false);
  check_layer("linear", a);
  check_layer("linear3d", b);
  check_layer("linear_nobias", c);
  EXPECT_FALSE(c.bias.defined());
}

// Without grad mode Linear multiplies a few rows by a transposed copy of its weight and more rows
// by the weight packed for the GEMM, each made on its second call: the same bits as the grad-mode
// forward for one row (the GEMM's few-row path) and for many, and both follow in-place updates
// of the weight and a replaced weight.
TEST(Layers, LinearNoGradEqualsGradModeAndFollowsTheWeight) {
  manual_seed(3);
  nn::Linear lin(300, 70);
  for (int64_t rows : {1, 3, 37, 300}) {
    const Tensor x = randn({rows, 300});
    const Tensor want = lin.forward(x);
    NoGradGuard no_grad;
    for (int call = 0; call < 2; ++call)  // without the copy, then with it
      EXPECT_TRUE(test::bit_equal(lin.forward(x), want)) << rows << " rows, call " << call;
  }
  // Two rows use the transposed copy, 37 the packed weight: both follow the weight.
  for (int64_t rows : {2, 37}) {
    SCOPED_TRACE(std::to_string(rows) + " rows");
    const Tensor x = randn({rows, 300});
    {
      NoGradGuard no_grad;
      lin.forward(x);
      lin.forward(x);  // makes the copy or the packing
      lin.weight.mul_(0.5);
    }
    const Tensor halved = lin.forward(x);
    {
      NoGradGuard no_grad;
      for (int call = 0; call < 2; ++call)
        EXPECT_TRUE(test::bit_equal(lin.forward(x), halved)) << "after an in-place update, call " << call;
    }
    lin.weight = randn({70, 300});
    const Tensor replaced = lin.forward(x);
    NoGradGuard no_grad;
    for (int call = 0; call < 2; ++call)
      EXPECT_TRUE(test::bit_equal(lin.forward(x), replaced)) << "after replacing the weight, call " << call;
  }
}

TEST(Layers, Conv2d) {
  nn::Conv2d a(3, 4, 3, 2, 1);
  check_layer("conv", a);
  nn::Conv2d b(4, 6, {3, 2}, {1, 2}, {1, 0}, {2, 1}, 2);
  check_layer("conv_groups", b);
  nn::Conv2d c(2, 3, 2, 1, 0, 1, 1, false);
  check_layer("conv_unbatched", c);  // (C, H, W) input
}

TEST(Layers, Conv1d) {
  nn::Conv1d a(3, 4, 3, 2, 1);
  check_layer("conv1d", a);
  nn::Conv1d b(4, 6, 2, 1, 0, 2, 2, false);
  check_layer("conv1d_groups", b);  // (C, L) input
  EXPECT_EQ(b.weight.shape(), Shape({6, 2, 2}));
  EXPECT_EQ(a.repr(), "Conv1d(3, 4, kernel_size=(3,), stride=(2,), padding=(1,))");
  EXPECT_EQ(b.repr(), "Conv1d(4, 6, kernel_size=(2,), stride=(1,), dilation=(2,), groups=2, bias=False)");
  EXPECT_EQ(error_of([&] { a.forward(randn({2, 3, 4, 4})); }),
            "[Conv1d] expected a 2-D (C, L) or 3-D (N, C, L) input, got shape (2, 3, 4, 4)");
  EXPECT_EQ(error_of([] { nn::Conv1d(3, 4, 3, 1, 0, 1, 2); }), "[Conv1d] in_channels (3) must be divisible by groups (2)");
}

TEST(Layers, ConvTranspose2d) {
  nn::ConvTranspose2d a(4, 2, 3, 2, 1, 1);
  check_layer("convt", a);
  nn::ConvTranspose2d b(4, 6, {2, 3}, {2, 1}, 0, 0, 2, false, {1, 2});
  check_layer("convt_groups", b);
  EXPECT_EQ(b.weight.shape(), Shape({4, 3, 2, 3}));
}

TEST(Layers, Pooling) {
  nn::MaxPool2d a(2);
  check_layer("maxpool", a);
  nn::MaxPool2d b(3, 2, 1, 1, true);
  check_layer("maxpool_s2p1_ceil", b);
  nn::AvgPool2d c(2);
  check_layer("avgpool", c);
  nn::AvgPool2d d(3, 2, 1, true, false);
  check_layer("avgpool_nocount", d);
}

TEST(Layers, BatchNormTrainingStep) {
  nn::BatchNorm1d a(4), b(3);
  nn::BatchNorm2d c(3);
  check_layer("bn1d", a, 1e-5, 1e-6);
  check_layer("bn1d_3d", b, 1e-5, 1e-6);
  check_layer("bn2d", c, 1e-5, 1e-6);
  EXPECT_EQ(c.num_batches_tracked.item<int64_t>(), 1);
}

TEST(Layers, LayerNorm) {
  nn::LayerNorm a(std::vector<int64_t>{4, 5});
  check_layer("layernorm", a, 1e-5, 1e-6);
  nn::LayerNorm b(6, 1e-3, false);
  check_layer("layernorm_noaffine", b, 1e-5, 1e-6);
}

TEST(Layers, Embedding) {
  nn::Embedding a(10, 4);
  check_layer("embedding", a);
  // padding_idx: the row keeps its (non-zero) value in forward but gets no gradient.
  nn::Embedding b(10, 4, 2);
  check_layer("embedding_pad", b);
  EXPECT_TRUE(allclose(b.weight.grad().select(0, 2), zeros({4}), 0, 0));
  // Fresh layers zero the padding row; a negative padding_idx counts from the end.
  nn::Embedding c(6, 3, -1);
  EXPECT_EQ(*c.padding_idx, 5);
  EXPECT_TRUE(allclose(c.weight.select(0, 5), zeros({3}), 0, 0));
  // i32 indices are accepted.
  Tensor y = c.forward(from_vector(std::vector<int64_t>{5, 0}, {2}).to(DType::i32));
  EXPECT_EQ(y.shape(), Shape({2, 3}));
}

TEST(Layers, Activations) {
  nn::ReLU relu;
  nn::LeakyReLU leaky(0.2);
  nn::Sigmoid sig;
  nn::Tanh th;
  nn::GELU gelu, gelu_tanh("tanh");
  nn::Softmax sm(1);
  nn::Identity id;
  check_layer("relu", relu);
  check_layer("leaky_relu", leaky);
  check_layer("sigmoid", sig);
  check_layer("tanh", th);
  check_layer("gelu", gelu);
  check_layer("gelu_tanh", gelu_tanh);
  check_layer("softmax", sm);
  check_layer("identity", id);
}

TEST(Layers, FlattenUnflatten) {
  nn::Flatten flat;
  nn::Unflatten unflat(1, {2, -1});
  check_layer("flatten", flat);
  check_layer("unflatten", unflat);
  EXPECT_EQ(nn::Flatten(0, 1).forward(zeros({2, 3, 4})).shape(), Shape({6, 4}));
  EXPECT_EQ(nn::Unflatten(-1, {2, 2}).forward(zeros({3, 4})).shape(), Shape({3, 2, 2}));
  EXPECT_NE(error_of([] { nn::Unflatten(1, {3, 2}).forward(zeros({2, 5})); })
                .find("[Unflatten] sizes (3, 2) do not multiply to dim 1 of size 5"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::Unflatten(1, {-1, -1}); }).find("at most one size may be -1"), std::string::npos);
}

TEST(Layers, SequentialMlp) {
  nn::Sequential mlp(std::make_shared<nn::Linear>(6, 8), std::make_shared<nn::Tanh>(),
                     std::make_shared<nn::Linear>(8, 3));
  check_layer("mlp", mlp);
}

// linear_packed: linear's bits from a packed weight (3-D input, with and without a bias and the
// ReLU); where it cannot use the panels (an input that requires grad, another dtype) it is linear
// on the weight, gradients included.
TEST(Layers, LinearPackedEqualsLinear) {
  manual_seed(21);
  const Tensor w = randn({70, 300}), b = randn({70});
  const PackedLinearWeight packed = pack_linear_weight(w);
  const Tensor x = randn({3, 40, 300});
  for (bool relu : {false, true}) {
    for (const Tensor& bias : {b, Tensor()}) {
      const Tensor want = relu ? linear_relu(x, w, bias) : linear(x, w, bias);
      EXPECT_TRUE(test::bit_equal(linear_packed(x, packed, bias, relu), want)) << relu << bias.defined();
    }
  }
  Tensor xg = x.clone().requires_grad_();
  Tensor y = linear_packed(xg, packed, b, true);
  EXPECT_TRUE(test::bit_equal(y.detach(), linear_relu(x, w, b)));
  sum(y).backward();
  Tensor xr = x.clone().requires_grad_();
  sum(linear_relu(xr, w, b)).backward();
  EXPECT_TRUE(test::bit_equal(xg.grad(), xr.grad()));
  // A weight that requires grad gets its gradient, whatever the input needs.
  Tensor wg = w.clone().requires_grad_(), wr = w.clone().requires_grad_();
  sum(linear_packed(x, pack_linear_weight(wg), b)).backward();
  sum(linear(x, wr, b)).backward();
  ASSERT_TRUE(wg.grad().defined());
  EXPECT_TRUE(test::bit_equal(wg.grad(), wr.grad()));
  // A strided bias (every other value of a longer tensor) gives the bits of its contiguous copy.
  const Tensor wide = randn({70, 2}), strided = wide.select(1, 0);
  ASSERT_FALSE(strided.is_contiguous());
  for (bool relu : {false, true}) {
    const Tensor got = relu ? linear_relu(x, w, strided) : linear(x, w, strided);
    EXPECT_TRUE(test::bit_equal(got, relu ? linear_relu(x, w, strided.contiguous()) : linear(x, w, strided.contiguous())))
        << "strided bias, relu " << relu;
  }
  const Tensor x64 = x.to(DType::f64);
  EXPECT_TRUE(test::bit_equal(linear_packed(x64, pack_linear_weight(w.to(DType::f64)), b.to(DType::f64)),
                              linear(x64, w.to(DType::f64), b.to(DType::f64))));
  EXPECT_NE(error_of([&] { linear_packed(x64, packed, b); }).find("[linear] input dtype f64 differs from weight dtype f32"),
            std::string::npos);
}

// Sequential runs a Linear followed by a ReLU as one op (linear_relu: the ReLU in the GEMM's
// epilogue). Outputs, input gradients and parameter gradients must be bitwise those of running the
// modules one by one, in grad mode (one and many rows, a 3-D input, a Linear without bias, the
// gradient of a sum, whose gradient is expanded) and without grad mode (the transposed-weight
// path, before and after its copy is made). A subclass of Linear keeps its own forward.
TEST(Layers, SequentialLinearReluEqualsTheModulesOneByOne) {
  manual_seed(11);
  auto l1 = std::make_shared<nn::Linear>(300, 70);
  auto l2 = std::make_shared<nn::Linear>(70, 40, false);
  auto l3 = std::make_shared<nn::Linear>(40, 9);
  nn::Sequential seq(l1, std::make_shared<nn::ReLU>(), l2, std::make_shared<nn::ReLU>(), l3,
                     std::make_shared<nn::Sigmoid>());
  for (const Shape& shape : {Shape{1, 300}, Shape{37, 300}, Shape{4, 5, 300}}) {
    for (bool sum_loss : {false, true}) {
      SCOPED_TRACE(shape.str() + (sum_loss ? " sum" : " weighted sum"));
      const Tensor x0 = randn(shape);
      auto loss = [&](const Tensor& y) { return sum_loss ? sum(y) : sum(mul(y, randn(y.shape()))); };
      manual_seed(5);
      Tensor xa = x0.clone().requires_grad_();
      Tensor ya = seq.forward(xa);
      loss(ya).backward();
      std::vector<Tensor> ga;
      for (auto& [name, p] : seq.named_parameters()) {
        ga.push_back(p.grad().clone());
        p.set_grad(Tensor());
      }
      manual_seed(5);
      Tensor xb = x0.clone().requires_grad_();
      Tensor yb = xb;
      for (size_t i = 0; i < seq.size(); ++i) yb = seq[i]->forward(yb);
      loss(yb).backward();
      EXPECT_TRUE(test::bit_equal(ya, yb)) << "output";
      EXPECT_TRUE(test::bit_equal(xa.grad(), xb.grad())) << "input gradient";
      size_t k = 0;
      for (auto& [name, p] : seq.named_parameters()) {
        EXPECT_TRUE(test::bit_equal(ga[k++], p.grad())) << "gradient of " << name;
        p.set_grad(Tensor());
      }
      NoGradGuard no_grad;
      for (int call = 0; call < 3; ++call)  // the second call makes the transposed copies
        EXPECT_TRUE(test::bit_equal(seq.forward(x0), yb.detach())) << "no grad, call " << call;
    }
  }

  struct PlusOne : nn::Linear {
    PlusOne() : nn::Linear(4, 3) {}
    Tensor forward(const Tensor& x) override { return add(nn::Linear::forward(x), 1.0); }
  };
  auto custom = std::make_shared<PlusOne>();
  nn::Sequential s2(custom, std::make_shared<nn::ReLU>());
  const Tensor x = randn({2, 4});
  EXPECT_TRUE(test::bit_equal(s2.forward(x), relu(add(linear(x, custom->weight, custom->bias), 1.0))));
}

TEST(Layers, UnbatchedConvAndPoolEqualBatched) {
  manual_seed(11);
  nn::Conv2d conv(2, 3, 3, 1, 1);
  nn::MaxPool2d pool(2);
  Tensor x = randn({2, 6, 6});
  Tensor y3 = pool.forward(conv.forward(x));
  Tensor y4 = pool.forward(conv.forward(x.unsqueeze(0)));
  EXPECT_EQ(y3.shape(), Shape({3, 3, 3}));
  EXPECT_TRUE(test::bit_equal(y3, y4.squeeze(0)));
}

TEST(Layers, DropoutTrainAndEval) {
  manual_seed(12);
  nn::Dropout drop(0.25);
  Tensor x = full({100000}, 2.0);
  Tensor y = drop.forward(x);
  std::vector<float> v = y.to_vector<float>();
  int64_t zeros_seen = 0;
  for (float e : v) {
    if (e == 0.0f) ++zeros_seen;
    else EXPECT_FLOAT_EQ(e, 2.0f / 0.75f);
  }
  // Binomial(1e5, 0.25): sd ~ 137; allow 5 sd.
  EXPECT_NEAR(static_cast<double>(zeros_seen), 25000.0, 700.0);
  drop.eval();
  EXPECT_TRUE(test::bit_equal(drop.forward(x), x));
  nn::Dropout none(0.0), all(1.0);
  EXPECT_TRUE(test::bit_equal(none.forward(x), x));
  EXPECT_TRUE(allclose(all.forward(x), zeros({100000}), 0, 0));
  EXPECT_NE(error_of([] { nn::Dropout(1.5); }).find("[Dropout] probability p must be between 0 and 1, got 1.5"),
            std::string::npos);
  // Gradient: the same mask scales the upstream gradient.
  Tensor xi = ones({1000});
  xi.requires_grad_();
  nn::Dropout d2(0.5);
  Tensor out = d2.forward(xi);
  out.backward(ones({1000}));
  EXPECT_TRUE(allclose(xi.grad(), out.detach(), 0, 0));
}

TEST(Layers, ConstructionErrors) {
  EXPECT_NE(error_of([] { nn::Conv2d(3, 4, 3, 1, 0, 1, 2); }).find("[Conv2d] in_channels (3) must be divisible by groups (2)"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::Conv2d(4, 3, 3, 1, 0, 1, 2); }).find("out_channels (3) must be divisible by groups (2)"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::Conv2d(4, 4, 0); }).find("[Conv2d] kernel_size must be positive, got 0"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::ConvTranspose2d(4, 4, 3, 1, 0, 1); })
                .find("[ConvTranspose2d] output_padding 1 must be smaller than stride 1 or dilation 1"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::MaxPool2d(2, 2, 2); }).find("[MaxPool2d] padding 2 must be at most half of kernel_size 2"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::Embedding(5, 2, 5); }).find("[Embedding] padding_idx 5 must be within num_embeddings (5)"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::GELU("fast"); }).find("[GELU] approximate must be 'none' or 'tanh', got 'fast'"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::LayerNorm(std::vector<int64_t>{}); }).find("[LayerNorm] normalized_shape must not be empty"),
            std::string::npos);
  EXPECT_NE(error_of([] { nn::BatchNorm2d(0); }).find("[BatchNorm2d] num_features must be positive, got 0"),
            std::string::npos);
}

TEST(Layers, ForwardErrors) {
  nn::Conv2d conv(3, 4, 3);
  EXPECT_NE(error_of([&] { conv.forward(zeros({3, 5})); })
                .find("[Conv2d] expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape (3, 5)"),
            std::string::npos);
  nn::BatchNorm2d bn(3);
  EXPECT_NE(error_of([&] { bn.forward(zeros({2, 3, 4})); }).find("[BatchNorm2d] expected 4D input (got 3D input"),
            std::string::npos);
  EXPECT_NE(error_of([&] { bn.forward(zeros({2, 4, 2, 2})); }).find("[BatchNorm2d] expected 3 channels (dim 1)"),
            std::string::npos);
  nn::BatchNorm1d bn1(3);
  EXPECT_NE(error_of([&] { bn1.forward(zeros({1, 3})); }).find("expected more than 1 value per channel"),
            std::string::npos);
  bn1.eval();
  EXPECT_EQ(bn1.forward(zeros({1, 3})).shape(), Shape({1, 3}));  // eval uses running stats
  nn::LayerNorm ln(std::vector<int64_t>{4, 5});
  EXPECT_NE(error_of([&] { ln.forward(zeros({2, 5, 4})); })
                .find("[LayerNorm] normalized_shape (4, 5) expects an input whose trailing dims match, got shape (2, 5, 4)"),
            std::string::npos);
  nn::Embedding emb(4, 2);
  EXPECT_NE(error_of([&] { emb.forward(zeros({2})); }).find("[Embedding] indices must be integers, got f32"),
            std::string::npos);
  nn::MSELoss mse;
  EXPECT_NE(error_of([&] { mse.forward(zeros({2})); }).find("[MSELoss] a loss takes (input, target)"),
            std::string::npos);
}

}  // namespace
}  // namespace ember
