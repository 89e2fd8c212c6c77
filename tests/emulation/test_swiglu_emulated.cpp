// The SwiGLU kernels (model/ops/swiglu_kernels.cuh) run on the CPU in the host model of
// tests/emulation/cuda_emulation.h, in fp32 and bf16 storage, against the CPU op in double with
// the GPU test's bounds (docs/numerics.md, "SwiGLU"), over grids that cover n exactly, leave
// idle threads, or are too small so the grid-stride loop wraps; and in place (dh aliasing dact).
// This runs in every CI build. It checks the kernels' indexing, loads, stores and roundings; the
// device's own expf and FMA contraction are for OpsCuda.Swiglu* on a GPU.
#include "emulation/cuda_emulation.h"
// (the emulation header first: the kernels' source compiles against it)
#include "model/ops/swiglu_kernels.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/rng.h"
#include "testing/tolerance.h"

namespace muongpt {
namespace {

using testing::expect_close;
using testing::Tol;
using Bf16 = __nv_bfloat16;
using FVec = std::vector<float>;
using Vec = std::vector<double>;

constexpr double kU = 1.0 / 256;  // bf16 unit round-off

template <typename T>
constexpr bool kBf16 = std::is_same_v<T, Bf16>;

template <typename T>
std::vector<T> stored(const FVec& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = ops_cuda::from_f32<T>(v[i]);
  return out;
}
template <typename T>
FVec loaded(const std::vector<T>& v) {
  FVec out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = ops_cuda::to_f32(v[i]);
  return out;
}
// Normal values representable in T (so the reference sees exactly the kernel's inputs).
template <typename T>
FVec randn_stored(size_t n, Rng& rng, double scale) {
  FVec v(n);
  for (float& x : v) x = ops_cuda::to_f32(ops_cuda::from_f32<T>(float(scale * rng.normal())));
  return v;
}
template <typename T>
std::vector<T> poisoned(size_t n) {  // NaN in fp32 and bf16: an unwritten entry fails
  std::vector<T> v(n);
  std::memset(v.data(), 0xff, n * sizeof(T));
  return v;
}

template <typename T>
void check(int64_t n, unsigned blocks, unsigned threads, uint64_t seed) {
  SCOPED_TRACE("n " + std::to_string(n) + ", grid " + std::to_string(blocks) + " x " +
               std::to_string(threads) + (kBf16<T> ? ", bf16" : ", f32"));
  Rng rng(seed);
  const size_t m = size_t(n);
  const FVec h = randn_stored<T>(m, rng, 2.5), u = randn_stored<T>(m, rng, 1.0),
             dact = randn_stored<T>(m, rng, 1.0);
  const std::vector<T> hs = stored<T>(h), us = stored<T>(u);
  std::vector<T> act = poisoned<T>(m), gate = poisoned<T>(m), du = poisoned<T>(m);
  std::vector<T> dh = stored<T>(dact);  // in place: dact in, dh out
  const dim3 grid{blocks, 1, 1}, block{threads, 1, 1};
  emulation::launch(grid, block, 0, [&] {
    swiglu_forward_kernel<T>(act.data(), gate.data(), hs.data(), us.data(), n);
  });
  emulation::launch(grid, block, 0, [&] {
    swiglu_backward_kernel<T>(dh.data(), du.data(), dh.data(), hs.data(), us.data(), n);
  });

  // The reference: the CPU op in double on the same values.
  const Vec hd(h.begin(), h.end()), ud(u.begin(), u.end()), dd(dact.begin(), dact.end());
  Vec ref_act(m), ref_gate(m), ref_dh(m), ref_du(m), mag_dh(m);
  swiglu_forward(ref_act.data(), ref_gate.data(), hd.data(), ud.data(), n);
  swiglu_backward(ref_dh.data(), ref_du.data(), dd.data(), hd.data(), ud.data(), n);
  for (size_t i = 0; i < m; ++i)  // silu' = σ(1 + h(1 − σ)) cancels near h ≈ −1.28
    mag_dh[i] = std::abs(dd[i] * ud[i]) * sigmoid(hd[i]) * (1 + 2 * std::abs(hd[i]));
  const Tol tol{1e-5 + (kBf16<T> ? kU : 0.0), 1e-6};
  expect_close("gate", loaded(gate), ref_gate, tol);
  expect_close("act", loaded(act), ref_act, tol);
  expect_close("du", loaded(du), ref_du, tol);
  expect_close("dh, in place", loaded(dh), ref_dh, tol, mag_dh);

#if defined(__x86_64__) && !defined(__FMA__)
  // Here the kernels' source and swiglu_cpu.cpp are the same host compiler's code for the same
  // float expressions (glibc's expf on both sides, no FMA contraction on baseline x86-64), so the
  // results agree bit for bit with the CPU float op rounded to T once: one rounding per store.
  FVec f_act(m), f_gate(m), f_dh(m), f_du(m);
  swiglu_forward(f_act.data(), f_gate.data(), h.data(), u.data(), n);
  swiglu_backward(f_dh.data(), f_du.data(), dact.data(), h.data(), u.data(), n);
  for (auto [what, got, want] :
       {std::tuple{"gate", loaded(gate), f_gate}, std::tuple{"act", loaded(act), f_act},
        std::tuple{"du", loaded(du), f_du}, std::tuple{"dh", loaded(dh), f_dh}}) {
    for (size_t i = 0; i < m; ++i) {
      const float want_i = ops_cuda::to_f32(ops_cuda::from_f32<T>(want[i]));
      ASSERT_EQ(std::memcmp(&got[i], &want_i, sizeof(float)), 0)
          << what << " at " << i << ": " << got[i] << " vs " << want_i;
    }
  }
#endif
}

template <typename T>
class SwigluEmulated : public ::testing::Test {};
struct StorageName {
  template <typename T>
  static std::string GetName(int) {
    return kBf16<T> ? "bf16" : "f32";
  }
};
using StorageTypes = ::testing::Types<float, Bf16>;
TYPED_TEST_SUITE(SwigluEmulated, StorageTypes, StorageName);

TYPED_TEST(SwigluEmulated, KernelsMatchTheCpuOp) {
  using T = TypeParam;
  check<T>(1, 1, kSwigluThreads, 1);     // one element, 255 idle threads
  check<T>(1000, 4, kSwigluThreads, 2);  // grid_for(1000, 256): the tail idle
  check<T>(4097, 3, kSwigluThreads, 3);  // too small a grid: ~5 rounds each
  check<T>(777, 2, 96, 4);               // a block size that is not 256
}

}  // namespace
}  // namespace muongpt
