// The CUDA toolchain smoke test: a kernel computes what the CPU computes. Skips without a GPU.
#include <gtest/gtest.h>

#include <vector>

#include "core/device.h"

namespace muongpt {
namespace {

TEST(Cuda, AxpyKernelMatchesCpu) {
  if (cuda_device_count() == 0) GTEST_SKIP() << describe_devices();
  const int64_t n = 100003;  // not a multiple of the block size
  std::vector<float> x(n), y(n), want(n);
  for (int64_t i = 0; i < n; ++i) x[i] = float(i % 97) * 0.5f, y[i] = float(i % 13);
  for (int64_t i = 0; i < n; ++i) want[i] = 2.5f * x[i] + y[i];
  cuda_axpy(2.5f, x.data(), y.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(y[i], want[i]) << i;
}

TEST(Cuda, DeviceQueryDescribesEveryDevice) {
  if (cuda_device_count() == 0) GTEST_SKIP() << describe_devices();
  DeviceInfo d = cuda_device_info(0);
  EXPECT_FALSE(d.name.empty());
  EXPECT_GE(d.cc_major, 7);
  EXPECT_GT(d.total_bytes, 0u);
}

}  // namespace
}  // namespace muongpt
