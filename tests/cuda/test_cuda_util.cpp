// core/cuda_util.h against the host: bf16 conversions bit for bit (float_to_bf16 /
// bf16_to_float), fill/scale/axpy bit for bit, sum_squares against a long-double host sum and
// bit-identical from run to run, all_finite with a NaN or an Inf hidden at the last index.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "core/cuda_util.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "testing/cuda_testing.h"
#include "testing/errors.h"

#ifdef MUONGPT_HAVE_CUDA
namespace muongpt {
namespace {

using testing::DeviceArray;

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
uint32_t to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// Bit patterns where rounding to bf16 is easy to get wrong, then random patterns over the whole
// 32-bit range (every exponent, NaNs included).
std::vector<uint32_t> awkward_f32_bits() {
  std::vector<uint32_t> v = {
      0x00000000u, 0x80000000u,  // ±0
      0x00000001u, 0x80000001u,  // smallest denormals (round to ±0)
      0x00008000u, 0x00018000u,  // denormal ties: to even down (0x0000), to even up (0x0002)
      0x00007fffu, 0x00008001u,  // just below / above a denormal tie
      0x007fffffu, 0x807fffffu,  // largest denormals (round up to the smallest normal)
      0x00800000u, 0x00ffffffu,  // smallest normal; rounds up across a binade
      0x3f800000u, 0xbf800000u,  // ±1
      0x3f808000u, 0x3f818000u,  // ties: 1 + 2^-8 → 1 (even), 1 + 3·2^-8 → 1 + 2^-6 (even)
      0x3f807fffu, 0x3f808001u,  // either side of a tie
      0x3fffffffu, 0xbfffffffu,  // rounds up to ±2
      0x7f7f7fffu, 0x7f7f8000u,  // largest finite bf16 stays; the tie above rounds to inf
      0x7f7fffffu, 0xff7fffffu,  // FLT_MAX → ±inf
      0x7f800000u, 0xff800000u,  // ±inf
      0x7fc00000u, 0xffc00000u,  // quiet NaNs
      0x7f800001u, 0xff800001u,  // signalling NaNs whose payload sits in the low half only
      0x7fbfffffu, 0x7fffffffu, 0xffffffffu, 0x7fa00000u};
  Rng rng(7);
  for (int i = 0; i < 200000; ++i) v.push_back(static_cast<uint32_t>(rng.next_u64() >> 32));
  v.push_back(0x12345678u);  // an odd count
  return v;
}

TEST(CudaUtil, ConvertF32ToBf16MatchesHostBitForBit) {
  MG_REQUIRE_GPU();
  const std::vector<uint32_t> bits = awkward_f32_bits();
  std::vector<float> src(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) src[i] = from_bits(bits[i]);
  DeviceArray<float> d_src(src);
  DeviceArray<uint16_t> d_dst(int64_t(src.size()));
  convert(d_dst.get(), DType::bf16, d_src.get(), DType::f32, d_src.size(), nullptr);
  const std::vector<uint16_t> got = d_dst.download();
  for (size_t i = 0; i < src.size(); ++i)
    ASSERT_EQ(got[i], float_to_bf16(src[i])) << std::hex << "f32 bits 0x" << bits[i];
  // Spot checks of the host reference itself, so both cannot be wrong the same way.
  EXPECT_EQ(float_to_bf16(from_bits(0x3f808000u)), 0x3f80u);
  EXPECT_EQ(float_to_bf16(from_bits(0x3f818000u)), 0x3f82u);
  EXPECT_EQ(float_to_bf16(from_bits(0x7f7fffffu)), 0x7f80u);
  EXPECT_EQ(float_to_bf16(from_bits(0x7f800001u)), 0x7fc0u);  // NaN stays NaN (quiet bit)
}

TEST(CudaUtil, ConvertBf16ToF32IsExactForEveryPattern) {
  MG_REQUIRE_GPU();
  std::vector<uint16_t> src(65536 + 3);
  for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<uint16_t>(i);  // wraps: odd n
  DeviceArray<uint16_t> d_src(src);
  DeviceArray<float> d_dst(int64_t(src.size()));
  convert(d_dst.get(), DType::f32, d_src.get(), DType::bf16, d_src.size(), nullptr);
  const std::vector<float> got = d_dst.download();
  for (size_t i = 0; i < src.size(); ++i)
    ASSERT_EQ(to_bits(got[i]), to_bits(bf16_to_float(src[i]))) << i;
}

TEST(CudaUtil, ConvertSameTypeCopiesAndRejectsOtherTypes) {
  MG_REQUIRE_GPU();
  std::vector<float> src = {1.5f, -2.25f, std::numeric_limits<float>::quiet_NaN(), 7.0f, 0.0f};
  DeviceArray<float> a(src), b(int64_t(src.size()));
  convert(b.get(), DType::f32, a.get(), DType::f32, a.size(), nullptr);
  const std::vector<float> got = b.download();
  for (size_t i = 0; i < src.size(); ++i) EXPECT_EQ(to_bits(got[i]), to_bits(src[i])) << i;
  EXPECT_NE(testing::error_of([&] {
              convert(b.get(), DType::f64, a.get(), DType::f32, 2, nullptr);
            }).find("only F32 and BF16"),
            std::string::npos);
  EXPECT_NE(testing::error_of([&] {
              convert(a.get(), DType::bf16, a.get(), DType::f32, a.size(), nullptr);
            }).find("in place"),
            std::string::npos);
}

TEST(CudaUtil, CopiesRoundTrip) {
  MG_REQUIRE_GPU();
  cudaStream_t s;
  MG_CUDA(cudaStreamCreate(&s));
  const int64_t n = 100003;
  std::vector<float> host(n), back(n, -1.0f);
  for (int64_t i = 0; i < n; ++i) host[i] = float(i) * 0.25f - 7.0f;
  DeviceArray<float> a(n), b(n);
  copy_to_device(a.get(), host.data(), sizeof(float) * n, s);
  copy_device(b.get(), a.get(), sizeof(float) * n, s);
  copy_to_host(back.data(), b.get(), sizeof(float) * n, s);
  stream_sync(s);
  EXPECT_EQ(back, host);
  MG_CUDA(cudaStreamDestroy(s));
}

TEST(CudaUtil, FillScaleAxpyMatchTheHostBitForBit) {
  MG_REQUIRE_GPU();
  Rng rng(3);
  for (int64_t n : {int64_t(1), int64_t(255), int64_t(257), int64_t(1000003)}) {
    std::vector<float> x(n), y(n);
    for (auto& v : x) v = float(rng.normal());
    for (auto& v : y) v = float(rng.normal());
    DeviceArray<float> dx(x), dy(y), dz(n);

    fill_f32(dz.get(), -3.5f, n, nullptr);
    for (float v : dz.download()) ASSERT_EQ(v, -3.5f) << "n=" << n;

    const float a = 0.3f;
    scale_f32(dx.get(), a, n, nullptr);
    std::vector<float> got = dx.download();
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(to_bits(got[i]), to_bits(a * x[i])) << n << " " << i;

    axpy_f32(dy.get(), -1.7f, dx.get(), n, nullptr);  // y += -1.7 · (a·x), one rounding
    got = dy.download();
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(to_bits(got[i]), to_bits(std::fma(-1.7f, a * x[i], y[i]))) << n << " " << i;
  }
}

TEST(CudaUtil, SumSquaresIsAccurateAndDeterministic) {
  MG_REQUIRE_GPU();
  Rng rng(5);
  // Sizes below one block, between the one-block and many-block grids, and above the largest grid
  // (so threads loop), odd everywhere.
  for (int64_t n :
       {int64_t(1), int64_t(3), int64_t(1023), int64_t(1025), int64_t(262145), int64_t(3000017)}) {
    std::vector<float> x(n);
    // Magnitudes over many binades so that the order of summation matters.
    for (auto& v : x) v = float(rng.normal() * std::exp2(rng.uniform(-20.0, 20.0)));
    long double want = 0;
    for (float v : x) want += (long double)v * (long double)v;
    DeviceArray<float> dx(x);
    DeviceArray<double> out(2);
    sum_squares_f32(dx.get(), n, out.get(), nullptr);
    sum_squares_f32(dx.get(), n, out.get() + 1, nullptr);
    const std::vector<double> got = out.download();
    // Every square is exact in double; the sums of positive terms are off by at most
    // (number of additions on any path) · 2^-53 relative, about 1e-13 here.
    EXPECT_NEAR(got[0], double(want), 1e-12 * double(want)) << "n=" << n;
    EXPECT_EQ(std::memcmp(&got[0], &got[1], sizeof(double)), 0) << "n=" << n << " not bitwise";
    const double sync = sum_squares_f32_sync(dx.get(), n, nullptr);
    EXPECT_EQ(std::memcmp(&sync, &got[0], sizeof(double)), 0) << "n=" << n;
  }
  DeviceArray<double> out(1);
  std::vector<double> nan = {std::numeric_limits<double>::quiet_NaN()};
  out.upload(nan);
  sum_squares_f32(nullptr, 0, out.get(), nullptr);  // n = 0 writes +0
  EXPECT_EQ(out.download()[0], 0.0);
}

TEST(CudaUtil, AllFiniteFindsANanOrAnInfAtTheLastIndex) {
  MG_REQUIRE_GPU();
  for (int64_t n : {int64_t(1), int64_t(257), int64_t(1000003)}) {
    std::vector<float> x(n);
    for (int64_t i = 0; i < n; ++i) x[i] = float(i % 101) - 50.0f;
    x[0] = std::numeric_limits<float>::max();  // large but finite
    if (n > 1) x[1] = std::numeric_limits<float>::denorm_min();
    DeviceArray<float> dx(x);
    DeviceArray<int> flag(1);
    all_finite_f32(dx.get(), n, flag.get(), nullptr);
    EXPECT_EQ(flag.download()[0], 1) << "n=" << n;
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
          -std::numeric_limits<float>::infinity()}) {
      x[n - 1] = bad;
      dx.upload(x);
      all_finite_f32(dx.get(), n, flag.get(), nullptr);
      EXPECT_EQ(flag.download()[0], 0) << "n=" << n << " bad=" << bad;
      all_finite_f32(dx.get(), n - 1, flag.get(), nullptr);  // the bad one just out of range
      EXPECT_EQ(flag.download()[0], 1) << "n=" << n << " bad=" << bad;
    }
  }
}

}  // namespace
}  // namespace muongpt
#endif
