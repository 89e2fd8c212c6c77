// What the host knows about GPUs without one: the data-sheet peaks the MFU is measured against.
#include <gtest/gtest.h>

#include "core/device.h"

namespace muongpt {
namespace {

TEST(GpuPeak, NamesMapToTheirDenseDataSheetPeak) {
  EXPECT_DOUBLE_EQ(gpu_peak_tflops("NVIDIA H100 80GB HBM3", true), 989.4);  // SXM
  EXPECT_DOUBLE_EQ(gpu_peak_tflops("NVIDIA H100 80GB HBM3", false), 66.9);  // strict float32
  EXPECT_DOUBLE_EQ(gpu_peak_tflops("NVIDIA H100 PCIe", true), 756.5);       // before "H100"
  EXPECT_DOUBLE_EQ(gpu_peak_tflops("NVIDIA H100 NVL", true), 835.5);
  EXPECT_DOUBLE_EQ(gpu_peak_tflops("NVIDIA H200", true), 989.4);
  EXPECT_DOUBLE_EQ(gpu_peak_tflops("NVIDIA H200 NVL", false), 60.0);
  EXPECT_DOUBLE_EQ(gpu_peak_tflops("NVIDIA GH200 480GB", true), 989.4);
  EXPECT_DOUBLE_EQ(gpu_peak_tflops("NVIDIA A100-SXM4-80GB", true), 312.0);
  EXPECT_EQ(gpu_peak_tflops("NVIDIA GeForce RTX 4090", true), 0.0);  // unknown: no MFU
  EXPECT_EQ(gpu_peak_tflops("", true), 0.0);
}

}  // namespace
}  // namespace muongpt
