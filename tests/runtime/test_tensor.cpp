// Tensor semantics: views share storage, strides and contiguity, broadcasting, reshape as view or
// copy, cat/stack/index_select, to(dtype) for every dtype pair (rounding checked against PyTorch),
// item(), printing, and the text of error messages.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "ember/config.h"
#include "ember/runtime/autograd.h"
#include "ember/runtime/device.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/value.h"
#include "kernels/kernels.h"
#include "tests/support/check.h"

namespace ember {
namespace {

using test::allclose;
using test::bit_equal;
using test::values_f64;

std::vector<double> iota(int64_t n, double start = 0.0) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = start + static_cast<double>(i);
  return v;
}

Tensor iota_tensor(const Shape& s, DType dt = DType::f32) { return test::make_tensor(iota(s.numel()), s, dt); }

// Runs fn, expecting ember::Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "expected ember::Error containing '" << parts.front() << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

// --- views share storage -----------------------------------------------------------------------

TEST(TensorViews, WritesThroughViewsAreVisibleInBase) {
  Tensor base = iota_tensor({3, 4});
  Tensor col = base.narrow(1, 1, 2);  // columns 1..2
  EXPECT_TRUE(col.is_alias_of(base));
  col.fill_(-1.0);
  EXPECT_EQ(values_f64(base), (std::vector<double>{0, -1, -1, 3, 4, -1, -1, 7, 8, -1, -1, 11}));

  Tensor row = base.select(0, 2);  // (4)
  row.mul_(10.0);
  EXPECT_EQ(values_f64(base), (std::vector<double>{0, -1, -1, 3, 4, -1, -1, 7, 80, -10, -10, 110}));

  Tensor tr = base.t();  // (4, 3)
  tr.narrow(0, 3, 1).fill_(5.0);  // last column of base
  EXPECT_EQ(values_f64(base.select(1, 3)), (std::vector<double>{5, 5, 5}));

  Tensor stepped = base.reshape({12}).slice(0, 0, 12, 5);  // elements 0, 5, 10
  EXPECT_EQ(stepped.shape(), Shape({3}));
  EXPECT_EQ(stepped.stride(0), 5);
  stepped.zero_();
  EXPECT_EQ(values_f64(base), (std::vector<double>{0, -1, -1, 5, 4, 0, -1, 5, 80, -10, 0, 5}));
}

TEST(TensorViews, WritesToBaseAreVisibleInViewsAndBumpTheSharedVersion) {
  Tensor base = iota_tensor({2, 3});
  Tensor v = base.reshape({3, 2});
  Tensor u = base.unsqueeze(0).permute({2, 0, 1});  // (3, 1, 2)
  const uint32_t ver = v.version();
  base.add_(100.0);
  EXPECT_EQ(values_f64(v), (std::vector<double>{100, 101, 102, 103, 104, 105}));
  EXPECT_EQ(values_f64(u), (std::vector<double>{100, 103, 101, 104, 102, 105}));
  EXPECT_GT(v.version(), ver);
  EXPECT_EQ(u.version(), base.version());
  Tensor d = base.detach();
  EXPECT_TRUE(d.is_alias_of(base));
  d.fill_(1.0);
  EXPECT_EQ(values_f64(base), std::vector<double>(6, 1.0));
}

TEST(TensorViews, ExpandIsAStrideZeroAlias) {
  Tensor b = test::make_tensor({1, 2, 3}, {3, 1}, DType::f32);
  Tensor e = b.expand({2, 3, 4});
  EXPECT_EQ(e.shape(), Shape({2, 3, 4}));
  EXPECT_EQ(e.strides(), Strides({0, 1, 0}));
  EXPECT_TRUE(e.is_alias_of(b));
  EXPECT_FALSE(e.is_contiguous());
  const std::vector<double> v = values_f64(e);
  EXPECT_EQ(v[0], 1);
  EXPECT_EQ(v[4], 2);
  EXPECT_EQ(v[23], 3);
  EXPECT_EQ(b.expand({-1, 2}).shape(), Shape({3, 2}));
}

// --- strides and contiguity --------------------------------------------------------------------

TEST(TensorStrides, ContiguousStridesAndTransposes) {
  Tensor x = iota_tensor({2, 3, 4});
  EXPECT_EQ(x.strides(), Strides({12, 4, 1}));
  EXPECT_TRUE(x.is_contiguous());
  EXPECT_EQ(x.size(-1), 4);
  EXPECT_EQ(x.stride(-3), 12);
  Tensor t = x.transpose(0, 2);
  EXPECT_EQ(t.shape(), Shape({4, 3, 2}));
  EXPECT_EQ(t.strides(), Strides({1, 4, 12}));
  EXPECT_FALSE(t.is_contiguous());
  Tensor c = t.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_FALSE(c.is_alias_of(x));
  EXPECT_EQ(c.strides(), Strides({6, 2, 1}));
  EXPECT_EQ(values_f64(c), values_f64(t));
  EXPECT_EQ(values_f64(c)[1], 12);  // t[0][0][1] = x[1][0][0]
  EXPECT_TRUE(x.contiguous().is_alias_of(x));
  Tensor p = x.permute({1, 2, 0});
  EXPECT_EQ(p.strides(), Strides({4, 1, 12}));
  Tensor n = x.narrow(2, 1, 2);
  EXPECT_EQ(n.offset(), 1);
  EXPECT_FALSE(n.is_contiguous());
  EXPECT_TRUE(x.narrow(0, 1, 1).is_contiguous());  // a leading slice stays contiguous
  EXPECT_EQ(x.narrow(0, 1, 1).offset(), 12);
  Tensor s = scalar_tensor(2.5);
  EXPECT_EQ(s.dim(), 0);
  EXPECT_EQ(s.numel(), 1);
  EXPECT_TRUE(s.is_contiguous());
  EXPECT_EQ(Shape{}.str(), "()");
  EXPECT_EQ(x.flatten(1).shape(), Shape({2, 12}));
  EXPECT_EQ(x.unsqueeze(-1).shape(), Shape({2, 3, 4, 1}));
  EXPECT_EQ(x.unsqueeze(1).squeeze().shape(), Shape({2, 3, 4}));
  EXPECT_EQ(x.unsqueeze(1).squeeze(1).shape(), Shape({2, 3, 4}));
  EXPECT_EQ(x.squeeze(0).shape(), Shape({2, 3, 4}));  // size 2: unchanged
}

// --- broadcasting ------------------------------------------------------------------------------

TEST(TensorBroadcast, ShapesAndValues) {
  EXPECT_EQ(broadcast_shapes({3, 1}, {1, 4}, "t"), Shape({3, 4}));
  EXPECT_EQ(broadcast_shapes({2, 1, 4}, {3, 1}, "t"), Shape({2, 3, 4}));
  EXPECT_EQ(broadcast_shapes({}, {2, 3}, "t"), Shape({2, 3}));
  EXPECT_EQ(broadcast_shapes({0, 1}, {1, 5}, "t"), Shape({0, 5}));
  EXPECT_EQ(broadcast_shapes({5}, {4, 1}, "t"), Shape({4, 5}));
  Tensor a = test::make_tensor({1, 2, 3}, {3, 1}, DType::f32);
  Tensor b = test::make_tensor({10, 20}, {2}, DType::f32);
  Tensor s = add(a, b);
  EXPECT_EQ(s.shape(), Shape({3, 2}));
  EXPECT_EQ(values_f64(s), (std::vector<double>{11, 21, 12, 22, 13, 23}));
  EXPECT_EQ(values_f64(mul(a, scalar_tensor(2.0))), (std::vector<double>{2, 4, 6}));
  expect_error([] { broadcast_shapes({3}, {4}, "myop"); }, {"[myop]", "(3)", "(4)", "cannot be broadcast"});
}

TEST(TensorBroadcast, DtypePromotion) {
  EXPECT_EQ(promote_types(DType::f32, DType::f64), DType::f64);
  EXPECT_EQ(promote_types(DType::i64, DType::f32), DType::f32);
  EXPECT_EQ(promote_types(DType::i32, DType::i64), DType::i64);
  EXPECT_EQ(promote_types(DType::b8, DType::u8), DType::u8);
  EXPECT_EQ(promote_types(DType::f16, DType::f32), DType::f32);
  Tensor a = test::make_tensor({1.5, 2.5}, {2}, DType::f32);
  Tensor b = test::make_tensor({1, 2}, {2}, DType::f64);
  Tensor c = add(a, b);
  EXPECT_EQ(c.dtype(), DType::f64);
  EXPECT_EQ(values_f64(c), (std::vector<double>{2.5, 4.5}));
}

// --- reshape: view when possible, copy otherwise --------------------------------------------------

// Comparisons give bool tensors for every arithmetic dtype; the CPU kernel writes bool outputs
// for the comparisons only and names that otherwise.
TEST(TensorCompare, EveryDtypeAndOnlyComparisonsWriteBool) {
  for (DType dt : {DType::f32, DType::f64, DType::i32, DType::i64, DType::bf16, DType::f16}) {
    SCOPED_TRACE(dtype_name(dt));
    const Tensor a = from_vector(std::vector<double>{-2, 0, 3, 1}, {4}).to(dt);
    const Tensor b = from_vector(std::vector<double>{1, 0, 3, 2}, {4}).to(dt);
    EXPECT_EQ(test::values_f64(eq(a, b)), (std::vector<double>{0, 1, 1, 0}));
    EXPECT_EQ(test::values_f64(gt(a, b)), (std::vector<double>{0, 0, 0, 0}));
    EXPECT_EQ(test::values_f64(lt(a, b)), (std::vector<double>{1, 0, 0, 1}));
    EXPECT_EQ(test::values_f64(ge(a, b)), (std::vector<double>{0, 1, 1, 0}));
    EXPECT_EQ(test::values_f64(le(a, b)), (std::vector<double>{1, 1, 1, 1}));
    EXPECT_EQ(eq(a, b).dtype(), DType::b8);
  }
  const Tensor a = ones({3}), out = empty({3}, TensorOptions(DType::b8));
  EXPECT_NE(test::error_of([&] { kernels::binary_cpu(kernels::BinaryOp::Add, a, a, out); })
                .find("[binary] a bool output is for the comparisons"),
            std::string::npos);
}

TEST(TensorReshape, ViewVersusCopy) {
  Tensor x = iota_tensor({2, 3, 4});
  Tensor v = x.reshape({6, -1});
  EXPECT_EQ(v.shape(), Shape({6, 4}));
  EXPECT_TRUE(v.is_alias_of(x));
  Tensor v2 = x.permute({0, 2, 1}).reshape({2, 12});  // not expressible as a view: copies
  EXPECT_FALSE(v2.is_alias_of(x));
  EXPECT_EQ(values_f64(v2.select(0, 0)).at(1), 4);  // x[0][1][0]
  EXPECT_EQ(values_f64(v2.select(0, 0)).at(3), 1);  // x[0][0][1]
  // merging dims that are still adjacent in memory stays a view
  Tensor n = x.narrow(0, 1, 1);
  EXPECT_TRUE(n.reshape({3, 4}).is_alias_of(x));
  Tensor tview = x.transpose(1, 2).reshape({2, 4, 3, 1});
  EXPECT_TRUE(tview.is_alias_of(x));  // only adds a size-1 dim
  expect_error([&] { x.transpose(0, 1).view({24}); }, {"[view]", "(3, 2, 4)", "(24)"});
  expect_error([&] { x.reshape({5, -1}); }, {"[reshape]", "(5, -1)", "24"});
  expect_error([&] { x.reshape({-1, -1}); }, {"[reshape]", "-1"});
  Tensor mod = x.reshape({24});
  mod.narrow(0, 23, 1).fill_(-5.0);
  EXPECT_EQ(values_f64(x).back(), -5.0);
}

TEST(TensorReshape, ExpandedAndSlicedSourcesCopyTheRightValues) {
  Tensor col = test::make_tensor({1, 2, 3}, {3, 1}, DType::f32);
  Tensor e = col.expand({3, 4});
  Tensor r = e.reshape({12});  // stride-0 dim: must copy
  EXPECT_FALSE(r.is_alias_of(col));
  EXPECT_EQ(values_f64(r), (std::vector<double>{1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}));
  Tensor c = e.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_EQ(values_f64(c), values_f64(r));
  Tensor x = iota_tensor({4, 5});
  Tensor s = x.slice(0, 1, 4, 2).slice(1, 0, 5, 3);  // rows 1, 3; cols 0, 3
  EXPECT_EQ(s.shape(), Shape({2, 2}));
  EXPECT_EQ(values_f64(s.reshape({4})), (std::vector<double>{5, 8, 15, 18}));
  EXPECT_EQ(values_f64(x.select(1, -1)), (std::vector<double>{4, 9, 14, 19}));
  EXPECT_EQ(values_f64(x.narrow(0, -1, 1)), (std::vector<double>{15, 16, 17, 18, 19}));
  EXPECT_EQ(scalar_tensor(3.0).flatten().shape(), Shape({1}));
  EXPECT_EQ(x.view({-1}).shape(), Shape({20}));
}

TEST(TensorInplace, CopyBroadcastsAndConverts) {
  Tensor dst = zeros({2, 3}, DType::f64);
  dst.copy_(from_vector(std::vector<int64_t>{7, 8, 9}, {3}));
  EXPECT_EQ(values_f64(dst), (std::vector<double>{7, 8, 9, 7, 8, 9}));
  Tensor half = zeros({2, 2}, DType::f16);
  half.t().copy_(test::make_tensor({1, 2, 3, 4}, {2, 2}, DType::f32));  // write through a transposed view
  EXPECT_EQ(values_f64(half), (std::vector<double>{1, 3, 2, 4}));
  Tensor a = test::make_tensor({1, 2, 3, 4}, {2, 2}, DType::f32);
  a.addcmul_(test::make_tensor({1, 1}, {2}), test::make_tensor({2, 3}, {2}), 0.5);
  EXPECT_EQ(values_f64(a), (std::vector<double>{2, 3.5, 4, 5.5}));
  a.addcdiv_(test::make_tensor({1, 1, 1, 1}, {2, 2}), test::make_tensor({2, 4, 2, 4}, {2, 2}), 2.0);
  EXPECT_EQ(values_f64(a), (std::vector<double>{3, 4, 5, 6}));
  a.clamp_(3.5, 5.5);
  EXPECT_EQ(values_f64(a), (std::vector<double>{3.5, 4, 5, 5.5}));
  a.add_(test::make_tensor({1, -1}, {2}), 2.0);
  EXPECT_EQ(values_f64(a), (std::vector<double>{5.5, 2, 7, 3.5}));
  a.div_(test::make_tensor({2}, {1}));
  EXPECT_EQ(values_f64(a), (std::vector<double>{2.75, 1, 3.5, 1.75}));
  expect_error([&] { a.add_(iota_tensor({2, 2, 2})); }, {"[add_]", "(2, 2, 2)", "(2, 2)"});
}

// --- joining and indexing ----------------------------------------------------------------------

TEST(TensorJoin, CatStackIndexSelect) {
  Tensor a = iota_tensor({2, 2});
  Tensor b = test::make_tensor({10, 11, 12, 13, 14, 15}, {2, 3}, DType::f32);
  Tensor c = cat({a, b}, 1);
  EXPECT_EQ(c.shape(), Shape({2, 5}));
  EXPECT_EQ(values_f64(c), (std::vector<double>{0, 1, 10, 11, 12, 2, 3, 13, 14, 15}));
  Tensor c0 = cat({a, a.t()}, 0);
  EXPECT_EQ(values_f64(c0), (std::vector<double>{0, 1, 2, 3, 0, 2, 1, 3}));
  EXPECT_EQ(cat({a, b}, -1).shape(), Shape({2, 5}));

  Tensor s = stack({a, mul(a, 2.0), mul(a, 3.0)}, 1);
  EXPECT_EQ(s.shape(), Shape({2, 3, 2}));
  EXPECT_EQ(values_f64(s), (std::vector<double>{0, 1, 0, 2, 0, 3, 2, 3, 4, 6, 6, 9}));
  EXPECT_EQ(stack({a, a}, -1).shape(), Shape({2, 2, 2}));

  Tensor idx = from_vector(std::vector<int64_t>{2, 0, 2}, {3});
  Tensor r = index_select(b, 1, idx);
  EXPECT_EQ(r.shape(), Shape({2, 3}));
  EXPECT_EQ(values_f64(r), (std::vector<double>{12, 10, 12, 15, 13, 15}));
  Tensor r0 = index_select(b, 0, from_vector(std::vector<int64_t>{1}, {1}));
  EXPECT_EQ(values_f64(r0), (std::vector<double>{13, 14, 15}));
  EXPECT_FALSE(r0.is_alias_of(b));

  expect_error([&] { cat({a, b}, 0); }, {"[cat]", "(2, 2)", "(2, 3)"});
  expect_error([&] { stack({a, b}, 0); }, {"[stack]", "(2, 2)", "(2, 3)"});
  expect_error([&] { index_select(b, 1, from_vector(std::vector<int64_t>{3}, {1})); }, {"[index_select]", "3"});
  expect_error([&] { cat({}, 0); }, {"[cat]"});
}

// --- dtype conversion --------------------------------------------------------------------------

constexpr DType kAllDTypes[] = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                DType::i32, DType::i64, DType::u8,  DType::b8};

TEST(TensorDtype, EveryPairConvertsExactValues) {
  // Values exactly representable in every dtype (bool: 0/1 only).
  const std::vector<double> vals{0, 1, 3, 7, 100, 255, 0, 42};
  const std::vector<double> bools{0, 1, 1, 0, 1, 0, 0, 1};
  for (DType src : kAllDTypes) {
    for (DType dst : kAllDTypes) {
      SCOPED_TRACE(std::string(dtype_name(src)) + " -> " + dtype_name(dst));
      const std::vector<double>& in = (src == DType::b8 || dst == DType::b8) ? bools : vals;
      Tensor x = test::make_tensor(in, {2, 4}, src);
      Tensor y = x.to(dst);
      EXPECT_EQ(y.dtype(), dst);
      EXPECT_EQ(y.shape(), Shape({2, 4}));
      EXPECT_EQ(values_f64(y), in);
      // non-contiguous source
      Tensor yt = x.t().to(dst);
      EXPECT_EQ(values_f64(yt), values_f64(x.t()));
      if (src == dst) EXPECT_TRUE(y.is_alias_of(x));
      else EXPECT_FALSE(y.is_alias_of(x));
    }
  }
  // nonzero -> true for every source dtype
  for (DType src : kAllDTypes) {
    if (src == DType::b8) continue;
    Tensor x = test::make_tensor({0, 2, 0, 9}, {4}, src);
    EXPECT_EQ(values_f64(x.to(DType::b8)), (std::vector<double>{0, 1, 0, 1})) << dtype_name(src);
  }
}

TEST(TensorDtype, RoundingMatchesPyTorch) {
  const test::Fixture fx = test::load_fixture("fixtures/ops_dtype.txt");
  int n = 0;
  for (const auto& [name, expected] : fx.tensors) {
    if (name.size() < 4 || name.compare(name.size() - 4, 4, "/out") != 0) continue;
    const std::string p = name.substr(0, name.size() - 4);
    SCOPED_TRACE(p);
    const Tensor& x = fx[p + "/x"];
    Tensor y = x.to(expected.dtype());
    EXPECT_EQ(y.dtype(), expected.dtype());
    // Exact comparison; NaN matches NaN. Signed zeros are checked bit for bit below.
    EXPECT_TRUE(allclose(y, expected, 0.0, 0.0));
    const std::vector<double> got = values_f64(y), want = values_f64(expected);
    for (size_t i = 0; i < got.size(); ++i) {
      if (want[i] == 0.0) {
        EXPECT_EQ(std::signbit(got[i]), std::signbit(want[i])) << "element " << i;
      }
    }
    ++n;
  }
  EXPECT_EQ(n, 22);
}

TEST(TensorDtype, HalfHelpersRoundToNearestEven) {
  EXPECT_EQ(Half(1.0f + 0x1p-11f).bits, 0x3c00);  // tie -> even (1.0)
  EXPECT_EQ(Half(1.0f + 3 * 0x1p-11f).bits, 0x3c02);
  EXPECT_EQ(Half(65520.0f).bits, 0x7c00);  // rounds up to inf
  EXPECT_EQ(Half(65519.0f).bits, 0x7bff);
  EXPECT_EQ(Half(0x1p-24f).bits, 0x0001);  // smallest subnormal
  EXPECT_EQ(Half(0x1p-25f).bits, 0x0000);  // tie -> even (0)
  EXPECT_EQ(static_cast<float>(Half(static_cast<float>(0x1p-24))), 0x1p-24f);
  EXPECT_EQ(BFloat16(1.0f + 0x1p-8f).bits, 0x3f80);
  EXPECT_EQ(BFloat16(1.0f + 3 * 0x1p-8f).bits, 0x3f82);
  EXPECT_TRUE(std::isnan(static_cast<float>(BFloat16(std::numeric_limits<float>::quiet_NaN()))));
}

// --- item and printing -------------------------------------------------------------------------

TEST(TensorItem, ScalarsAndOneElementTensors) {
  EXPECT_EQ(scalar_tensor(2.5).item(), 2.5);
  EXPECT_EQ(scalar_tensor(-3.0, DType::i64).item<int64_t>(), -3);
  EXPECT_EQ(test::make_tensor({7}, {1, 1}, DType::f16).item<float>(), 7.0f);
  EXPECT_EQ(sum(iota_tensor({4})).item(), 6.0);
  Tensor x = iota_tensor({2, 3});
  EXPECT_EQ(x.select(0, 1).select(0, 2).item(), 5.0);  // view with an offset
  expect_error([&] { x.item(); }, {"[item]", "6 elements", "(2, 3)"});
}

TEST(TensorPrint, FormatsLikePyTorch) {
  EXPECT_EQ(test::make_tensor({1, 2.5, -3}, {3}, DType::f32).str(), "tensor([1.0000, 2.5000, -3.0000])");
  EXPECT_EQ(iota_tensor({2, 2}).str(), "tensor([[0.0000, 1.0000],\n        [2.0000, 3.0000]])");
  EXPECT_EQ(scalar_tensor(0.5).str(), "tensor(0.5000)");
  EXPECT_EQ(from_vector(std::vector<int64_t>{4, -1}, {2}).str(), "tensor([4, -1], dtype=i64)");
  EXPECT_EQ(test::make_tensor({1.5}, {1}, DType::f64).str(), "tensor([1.5000], dtype=f64)");
  Tensor l = test::make_tensor({1}, {1}, DType::f32, true);
  EXPECT_EQ(l.str(), "tensor([1.0000], requires_grad=true)");
  Tensor y = mul(l, 2.0);
  EXPECT_NE(y.str().find("tensor([2.0000], grad_fn=<"), std::string::npos) << y.str();
  EXPECT_EQ(Tensor().str(), "tensor(undefined)");
  std::ostringstream os;
  os << iota_tensor({2}).t();
  EXPECT_EQ(os.str(), "tensor([0.0000, 1.0000])");
}

// --- error messages name the op, shapes and dtypes -----------------------------------------------

TEST(TensorErrors, MessagesNameOpShapesAndDtypes) {
  Tensor a = iota_tensor({2, 3}), b = iota_tensor({4, 5});
  expect_error([&] { add(a, b); }, {"[add]", "(2, 3)", "(4, 5)"});
  expect_error([&] { mul(a, iota_tensor({3, 2})); }, {"[mul]", "(2, 3)", "(3, 2)"});
  expect_error([&] { matmul(a, b); }, {"[matmul]", "(2, 3)", "(4, 5)"});
  expect_error([&] { linear(a, iota_tensor({4, 5})); }, {"[linear]", "(2, 3)", "(4, 5)"});
  expect_error([&] { softmax(a, 2); }, {"[softmax]", "dim 2"});
  expect_error([&] { softmax(iota_tensor({3}, DType::i64), 0); }, {"[softmax]", "i64"});
  expect_error([&] { index_select(a, 0, iota_tensor({1}, DType::f32)); }, {"[index_select]", "f32"});
  expect_error([&] { nll_loss(log_softmax(a, 1), iota_tensor({2}, DType::f32)); }, {"[nll_loss]", "f32"});
  expect_error([&] { nll_loss(log_softmax(a, 1), from_vector(std::vector<int64_t>{0, 3}, {2})); },
               {"[nll_loss]", "3"});
  expect_error([&] { mse_loss(a, iota_tensor({3, 2})); }, {"[mse_loss]", "(2, 3)", "(3, 2)"});
  expect_error([&] { a.permute({0, 0}); }, {"[permute]", "repeated"});
  expect_error([&] { a.narrow(1, 2, 2); }, {"[narrow]", "(2, 3)"});
  expect_error([&] { a.expand({3, 3}); }, {"[expand]", "(2, 3)", "(3, 3)"});
  expect_error([&] { a.transpose(0, 5); }, {"[transpose]", "dim 5", "rank 2"});
  expect_error([&] { a.data_ptr<double>(); }, {"f32", "f64"});
  expect_error([&] { dtype_from_name("f8"); }, {"f8"});
  expect_error([&] { a.copy_(iota_tensor({4})); }, {"[copy_]", "(4)", "(2, 3)"});
  expect_error([&] { empty({2, -1}); }, {"[empty]", "-1"});
}

}  // namespace

// Without a device nothing waits for one: the round-trip counters stay at zero.
TEST(Device, RoundTripCountersStayZeroWithoutADevice) {
  if (cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is visible (tests/cuda counts its round trips)";
  reset_cuda_round_trips();
  Tensor x = full({8}, 2.0);
  EXPECT_EQ(sum(mul(x, x)).item(), 32.0);
  EXPECT_EQ(cuda_round_trips().synchronizations, 0u);
  EXPECT_EQ(cuda_round_trips().device_to_host_copies, 0u);
}

// Without a usable GPU the runtime says why (for skip messages, tools and allocation errors).
TEST(Device, CudaUnavailableReasonSaysWhy) {
  const std::string why = cuda_unavailable_reason();
  if (cuda_device_count() > 0) {
    EXPECT_EQ(why, "");
    return;
  }
  if (!EMBER_WITH_CUDA) {
    EXPECT_EQ(why, "this build of Ember has no CUDA backend (built with EMBER_CUDA=OFF or without nvcc)");
    return;
  }
  EXPECT_TRUE(why.rfind("cudaGetDeviceCount failed with cuda", 0) == 0 || why.rfind("the CUDA runtime reports 0", 0) == 0)
      << why;
  try {
    empty({2}, TensorOptions().with_device(cuda_device(0)));
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("is not available (0 CUDA devices visible: " + why + ")"), std::string::npos)
        << e.what();
  }
}

}  // namespace ember

TEST(ValueKinds, Uint64RoundTripsBitForBit) {
  const uint64_t big = 0xF00DFACE12345678ull;  // >= 2^63
  ember::Value v(big);
  EXPECT_TRUE(v.is_int());
  EXPECT_LT(v.as_int(), 0);
  EXPECT_EQ(static_cast<uint64_t>(v.as_int()), big);
}

