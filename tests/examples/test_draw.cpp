// Unit tests of the examples' drawing helpers: nice_ticks (round tick values and their labels) and
// a line plot rendered to a PNG under the test's binary directory for a look.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "examples/common/draw.h"
#include "examples/common/png.h"
#include "ember/runtime/error.h"

namespace ember::examples {
namespace {

void expect_ticks(double lo, double hi, int max_ticks, bool integer, const std::vector<std::string>& labels) {
  SCOPED_TRACE(testing::Message() << "[" << lo << ", " << hi << "] max " << max_ticks);
  const Ticks t = nice_ticks(lo, hi, max_ticks, integer);
  EXPECT_EQ(t.labels, labels);
  ASSERT_EQ(t.values.size(), t.labels.size());
  for (size_t i = 0; i < t.values.size(); ++i) {
    EXPECT_NEAR(t.values[i], std::stod(t.labels[i]), 1e-12);
    EXPECT_GE(t.values[i], lo - 1e-12);
    EXPECT_LE(t.values[i], hi + 1e-12);
  }
}

TEST(NiceTicks, RoundStepsWithJustEnoughDecimals) {
  // A loss curve's padded range: steps of 0.002 or 0.005 print three decimals.
  expect_ticks(0.0284, 0.0419, 6, false, {"0.030", "0.032", "0.034", "0.036", "0.038", "0.040"});
  expect_ticks(0.0284, 0.0419, 4, false, {"0.030", "0.035", "0.040"});
  expect_ticks(0.031, 0.039, 6, false, {"0.032", "0.034", "0.036", "0.038"});
  expect_ticks(0.0, 1.0, 6, false, {"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"});
  expect_ticks(0.0, 1.0, 5, false, {"0.00", "0.25", "0.50", "0.75", "1.00"});
  expect_ticks(0.0, 10.0, 5, false, {"0.0", "2.5", "5.0", "7.5", "10.0"});
  expect_ticks(0.0, 100.0, 5, false, {"0", "25", "50", "75", "100"});
  expect_ticks(-0.013, 0.021, 6, false, {"-0.01", "0.00", "0.01", "0.02"});
  expect_ticks(-0.001, 0.029, 6, false, {"0.000", "0.005", "0.010", "0.015", "0.020", "0.025"});  // no "-0.000"
  expect_ticks(1200.0, 5600.0, 6, false, {"2000", "3000", "4000", "5000"});
  expect_ticks(1e-5, 4.2e-5, 6, false, {"0.00001", "0.00002", "0.00003", "0.00004"});
  expect_ticks(0.99, 1.01, 6, false, {"0.990", "0.995", "1.000", "1.005", "1.010"});
}

TEST(NiceTicks, IntegerTicksForEpochs) {
  expect_ticks(0.0, 1.0, 10, true, {"0", "1"});
  expect_ticks(0.0, 4.0, 10, true, {"0", "1", "2", "3", "4"});
  expect_ticks(0.0, 12.0, 10, true, {"0", "2", "4", "6", "8", "10", "12"});
  expect_ticks(0.0, 37.0, 10, true, {"0", "5", "10", "15", "20", "25", "30", "35"});
  expect_ticks(3.0, 90.0, 10, true, {"10", "20", "30", "40", "50", "60", "70", "80", "90"});
  expect_ticks(0.0, 200.0, 10, true, {"0", "25", "50", "75", "100", "125", "150", "175", "200"});
}

TEST(NiceTicks, RejectsEmptyRanges) {
  EXPECT_THROW(nice_ticks(1.0, 1.0, 6), Error);
  EXPECT_THROW(nice_ticks(2.0, 1.0, 6), Error);
  EXPECT_THROW(nice_ticks(0.0, INFINITY, 6), Error);
  EXPECT_THROW(nice_ticks(0.0, 1.0, 1), Error);
}

// Writes loss_plot.png next to the test binary: a typical MNIST autoencoder loss curve.
TEST(LinePlot, WritesALossCurve) {
  Series train{"train_loss", {31, 119, 180}, {}, {}}, val{"val_loss", {255, 127, 14}, {}, {}};
  for (int e = 0; e < 20; ++e) {
    train.x.push_back(e);
    train.y.push_back(0.03 + 0.035 * std::exp(-0.3 * e));
    val.x.push_back(e);
    val.y.push_back(0.031 + 0.03 * std::exp(-0.28 * e));
  }
  const Image img = line_plot({train, val}, "loss (MSE)", "epoch");
  EXPECT_EQ(img.width, 640);
  EXPECT_EQ(img.height, 400);
  write_png("loss_plot.png", img);
}

}  // namespace
}  // namespace ember::examples
