#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/arena.h"
#include "core/rng.h"
#include "core/tensor.h"

namespace muongpt {
namespace {

TEST(Tensor, ShapeStridesViewSlice) {
  float buf[24];
  Tensor t(buf, DType::f32, {2, 3, 4});
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.nbytes(), 96u);
  EXPECT_EQ(t.stride(0), 12);
  EXPECT_EQ(t.stride(-1), 1);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.shape_str(), "[2, 3, 4]");
  Tensor v = t.view({6, 4});
  EXPECT_EQ(v.size(0), 6);
  EXPECT_EQ(v.data<float>(), buf);
  Tensor s = v.slice(2, 5);
  EXPECT_EQ(s.size(0), 3);
  EXPECT_EQ(s.data<float>(), buf + 8);
  EXPECT_THROW(t.view({5, 5}), Error);
  EXPECT_THROW(t.data<double>(), Error);  // wrong element type
  EXPECT_THROW(v.slice(4, 7), Error);
}

TEST(Arena, CountsThenAllocatesAlignedZeroedMemory) {
  auto layout = [](Arena& a, Tensor* x, Tensor* y) {
    *x = a.alloc(DType::f32, {3, 5});
    *y = a.alloc(DType::f64, {7});
  };
  Tensor x, y;
  Arena arena = plan_arena(Device::cpu, [&](Arena& a) { layout(a, &x, &y); });
  EXPECT_FALSE(arena.is_counting());
  EXPECT_EQ(arena.capacity(), Arena::kAlign + 7 * 8);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(x.raw()) % Arena::kAlign, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(y.raw()) % Arena::kAlign, 0u);
  for (int i = 0; i < 7; ++i) EXPECT_EQ(y.data<double>()[i], 0.0);
  EXPECT_THROW(arena.alloc(DType::f32, {1}), Error);  // beyond the planned size
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f)), 1.0f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(-3.5f)), -3.5f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 0x1.0p-8f)), 1.0f);
  EXPECT_EQ(bf16_to_float(float_to_bf16(1.0f + 0x1.8p-8f)), 1.0f + 0x1.0p-7f);
  EXPECT_TRUE(std::isnan(bf16_to_float(float_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Rng, DeterministicAndRestorable) {
  Rng a(5), b(5);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  auto state = a.state();
  double u = a.uniform();
  b.set_state(state);
  EXPECT_EQ(b.uniform(), u);
  // Normal draws have roughly unit variance.
  Rng r(9);
  double s = 0, s2 = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    double z = r.normal();
    s += z, s2 += z * z;
  }
  EXPECT_NEAR(s / n, 0.0, 0.03);
  EXPECT_NEAR(s2 / n, 1.0, 0.05);
}

}  // namespace
}  // namespace muongpt
