// amp::GradScaler against torch.amp.GradScaler's algorithm: the scaled loss, unscaling by the
// float32 reciprocal, a skipped step on inf/NaN (optimizer state and step count unchanged),
// backoff, growth after growth_interval clean steps (and not to inf), unscale before clipping,
// misuse errors, the state dict round trip, and a disabled scaler.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "ember/runtime/autograd.h"
#include "ember/runtime/ops.h"
#include "ember/runtime/rng.h"
#include "ember/train/grad_scaler.h"
#include "ember/train/optim.h"

using namespace ember;

namespace {

struct Fixture {
  Tensor w = from_vector(std::vector<float>{0.5f, -1.0f, 2.0f}, {3});
  Tensor b = from_vector(std::vector<float>{0.25f}, {1});
  std::unique_ptr<optim::Adam> opt;
  Fixture() {
    w.requires_grad_(true);
    b.requires_grad_(true);
    opt = std::make_unique<optim::Adam>(optim::NamedParams{{"w", w}, {"b", b}}, optim::AdamOptions{.lr = 0.1});
  }
  // Sets the gradients to the given values (as if backward of a scaled loss had produced them).
  void grads(std::vector<float> gw, float gb) {
    w.set_grad(from_vector(gw, {3}));
    b.set_grad(from_vector(std::vector<float>{gb}, {1}));
  }
};

TEST(GradScaler, DefaultsAreTorchs) {
  amp::GradScaler s;
  EXPECT_EQ(s.get_scale(), 65536.0);
  EXPECT_EQ(s.options().growth_factor, 2.0);
  EXPECT_EQ(s.options().backoff_factor, 0.5);
  EXPECT_EQ(s.options().growth_interval, 2000);
  Tensor loss = from_vector(std::vector<float>{0.75f}, {});
  EXPECT_EQ(s.scale(loss).item_double(), 0.75 * 65536.0);
}

TEST(GradScaler, UnscalesByTheFloatReciprocalAndSteps) {
  Fixture f;
  amp::GradScaler s({.init_scale = 3.0});  // 1/3 is inexact: the float32 reciprocal is used
  f.grads({3.0f, -6.0f, 1.0f}, 0.5f);
  EXPECT_TRUE(s.step(*f.opt));
  const float inv = static_cast<float>(1.0 / 3.0);
  // The step used the unscaled gradients: Adam's first step moves each weight by -lr * sign(g).
  std::vector<float> w = f.w.to_vector<float>();
  EXPECT_FLOAT_EQ(w[0], 0.5f - 0.1f);
  EXPECT_FLOAT_EQ(w[1], -1.0f + 0.1f);
  std::vector<float> g = f.w.grad().to_vector<float>();
  EXPECT_EQ(g[0], 3.0f * inv);
  EXPECT_EQ(g[1], -6.0f * inv);
  EXPECT_EQ(g[2], 1.0f * inv);
  EXPECT_FALSE(s.found_inf(*f.opt));
  s.update();
  EXPECT_EQ(s.growth_tracker(), 1);
  EXPECT_EQ(s.get_scale(), 3.0);
}

TEST(GradScaler, InfOrNanSkipsTheStepAndBacksOff) {
  for (float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                    std::numeric_limits<float>::quiet_NaN()}) {
    Fixture f;
    amp::GradScaler s({.growth_interval = 3});
    // One clean step first, so that the optimizer has state to leave alone.
    f.grads({1, 1, 1}, 1);
    ASSERT_TRUE(s.step(*f.opt));
    s.update();
    EXPECT_EQ(s.growth_tracker(), 1);
    const std::vector<float> w_before = f.w.to_vector<float>();
    const Value state_before = f.opt->state_dict();
    const std::vector<float> m_before = state_before.at("state").at("0").at("exp_avg").as_tensor().to_vector<float>();
    f.grads({1, bad, 1}, 1);
    EXPECT_FALSE(s.step(*f.opt));
    EXPECT_TRUE(s.found_inf(*f.opt));
    EXPECT_EQ(f.w.to_vector<float>(), w_before);
    const Value state_after = f.opt->state_dict();
    EXPECT_EQ(state_after.at("state").at("0").at("step"), state_before.at("state").at("0").at("step"));
    EXPECT_EQ(state_after.at("state").at("0").at("exp_avg").as_tensor().to_vector<float>(), m_before);
    s.update();
    EXPECT_EQ(s.get_scale(), 32768.0);
    EXPECT_EQ(s.growth_tracker(), 0);
  }
}

TEST(GradScaler, GrowsAfterTheIntervalButNeverToInfinity) {
  Fixture f;
  amp::GradScaler s({.init_scale = 8.0, .growth_factor = 4.0, .growth_interval = 2});
  std::vector<double> scales;
  for (int i = 0; i < 6; ++i) {
    f.grads({1, 2, 3}, 4);
    s.step(*f.opt);
    s.update();
    scales.push_back(s.get_scale());
  }
  EXPECT_EQ(scales, (std::vector<double>{8, 32, 32, 128, 128, 512}));
  amp::GradScaler big({.init_scale = 3e38, .growth_interval = 1});
  f.grads({1, 2, 3}, 4);
  big.step(*f.opt);
  big.update();
  EXPECT_EQ(big.get_scale(), static_cast<double>(3e38f));  // 6e38 is not a float: kept
  EXPECT_EQ(big.growth_tracker(), 0);
}

TEST(GradScaler, UnscaleBeforeClippingClipsTheTrueGradients) {
  Fixture f;
  amp::GradScaler s({.init_scale = 1024.0});
  f.grads({3.0f * 1024, 4.0f * 1024, 0}, 0);
  s.unscale_(*f.opt);
  double norm = optim::clip_grad_norm_(std::vector<Tensor>{f.w, f.b}, 1.0);
  EXPECT_NEAR(norm, 5.0, 1e-6);  // the unscaled norm
  EXPECT_TRUE(s.step(*f.opt));    // does not unscale a second time
  EXPECT_NEAR(f.w.grad().to_vector<float>()[0], 0.6, 1e-6);
}

TEST(GradScaler, MisuseIsAnError) {
  Fixture f;
  amp::GradScaler s;
  f.grads({1, 1, 1}, 1);
  EXPECT_THROW(s.update(), Error);  // nothing recorded yet
  s.unscale_(*f.opt);
  EXPECT_THROW(s.unscale_(*f.opt), Error);
  s.step(*f.opt);
  EXPECT_THROW(s.step(*f.opt), Error);
  EXPECT_THROW(s.unscale_(*f.opt), Error);
  s.update();
  EXPECT_NO_THROW(s.unscale_(*f.opt));
  EXPECT_THROW(amp::GradScaler({.growth_factor = 1.0}), Error);
  EXPECT_THROW(amp::GradScaler({.backoff_factor = 1.0}), Error);
  EXPECT_THROW(amp::GradScaler({.growth_interval = 0}), Error);
  EXPECT_THROW(amp::GradScaler({.init_scale = std::nan("")}), Error);
}

TEST(GradScaler, StateDictRoundTrip) {
  Fixture f;
  amp::GradScaler s({.init_scale = 1000.0, .growth_interval = 5});
  for (int i = 0; i < 3; ++i) {
    f.grads({1, 2, 3}, 4);
    s.step(*f.opt);
    s.update();
  }
  Value st = s.state_dict();
  EXPECT_EQ(st.at("scale").as_double(), 1000.0);
  EXPECT_EQ(st.at("_growth_tracker").as_int(), 3);
  EXPECT_EQ(st.at("growth_interval").as_int(), 5);
  amp::GradScaler t;  // different options: the state's win, as in torch
  t.load_state_dict(st);
  EXPECT_EQ(t.state_dict(), st);
  // Both continue identically.
  for (int i = 0; i < 4; ++i) {
    f.grads({1, 2, 3}, 4);
    s.unscale_(*f.opt);
    t.unscale_(*f.opt);
    s.update();
    t.update();
  }
  EXPECT_EQ(t.state_dict(), s.state_dict());
  EXPECT_EQ(s.get_scale(), 2000.0);

  EXPECT_THROW(t.load_state_dict(Value(ValueMap{})), Error);
  ValueMap missing = st.as_map();
  missing.erase("_growth_tracker");
  try {
    t.load_state_dict(Value(missing));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'_growth_tracker'"), std::string::npos) << e.what();
  }
  ValueMap bad = st.as_map();
  bad["scale"] = Value(-1.0);
  EXPECT_THROW(t.load_state_dict(Value(bad)), Error);
}

TEST(GradScaler, DisabledIsATransparentWrapper) {
  Fixture f;
  amp::GradScaler s({.enabled = false});
  Tensor loss = from_vector(std::vector<float>{0.75f}, {});
  EXPECT_EQ(s.scale(loss).item_double(), 0.75);
  f.grads({1, std::numeric_limits<float>::infinity(), 1}, 1);
  EXPECT_TRUE(s.step(*f.opt));  // no checks: the optimizer steps
  s.update();
  EXPECT_EQ(s.get_scale(), 1.0);
  EXPECT_TRUE(s.state_dict().as_map().empty());
}

}  // namespace
