// Input checks computed on a device (runtime/device_checks.h), on the CPU: judged at once with the
// values as doubles, failing with the verdict's message; the front ends that use them keep their
// errors (nll_loss's target, index_select's index, binary_cross_entropy's range). The queue that
// a GPU uses is tested on a device (tests/cuda/test_steady_step.cpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ember/runtime/device_checks.h"
#include "ember/runtime/ops.h"

namespace ember {
namespace {

TEST(DeviceChecks, ACpuCheckIsJudgedAtOnce) {
  std::vector<double> seen;
  check_on_device(from_vector(std::vector<int64_t>{3, -7}, {2}), [&](const std::vector<double>& v) {
    seen = v;
    return std::string();
  });
  EXPECT_EQ(seen, (std::vector<double>{3.0, -7.0}));
  EXPECT_EQ(queued_device_checks(), 0u);
  try {
    check_on_device(full({2, 2}, 1.5), [](const std::vector<double>& v) {
      return v.size() == 4 && v[3] == 1.5 ? std::string("[op] four values, the last 1.5") : std::string();
    });
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[op] four values, the last 1.5");
  }
  EXPECT_THROW(check_on_device(Tensor(), [](const std::vector<double>&) { return std::string(); }), Error);
  run_device_checks();  // nothing queued: nothing happens
  EXPECT_EQ(CapturedDeviceChecks::take_since(0).size(), 0u);
}

TEST(DeviceChecks, SyncModeCanBeSwitched) {
  const bool before = sync_device_checks();
  set_sync_device_checks(true);
  EXPECT_TRUE(sync_device_checks());
  set_sync_device_checks(false);
  EXPECT_FALSE(sync_device_checks());
  set_sync_device_checks(before);
}

TEST(DeviceChecks, FrontEndsKeepTheirErrorsOnTheCpu) {
  try {
    cross_entropy(zeros({2, 3}), from_vector(std::vector<int64_t>{0, 5}, {2}));
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[nll_loss]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("5"), std::string::npos) << e.what();
  }
  try {
    index_select(zeros({4, 2}), 0, from_vector(std::vector<int64_t>{1, 4}, {2}));
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[index_select] index 4 is out of range for dimension 0 of size 4");
  }
  try {
    binary_cross_entropy(full({3}, 1.5), zeros({3}));
    FAIL() << "expected ember::Error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[binary_cross_entropy] all elements of input should be between 0 and 1");
  }
  EXPECT_NO_THROW(binary_cross_entropy(full({3}, 0.5), zeros({3})));
}

}  // namespace
}  // namespace ember
