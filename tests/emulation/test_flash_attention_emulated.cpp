// The fused attention kernels (model/ops/flash_attention_kernels.cuh) run on the CPU in the host
// model of tests/emulation/cuda_emulation.h, against the reference attention with the GPU test's
// bf16 bound (docs/numerics.md, "Flash attention"). This runs in every CI build, GPU or not: it
// checks the kernels' fragment indexing, masks, online softmax, tile loop bounds, layouts and the
// backward's algebra. What it cannot check (timing, races, the hardware's own fp32 summation
// order inside one mma) is left to FlashAttentionCuda.* on a GPU.
#include "emulation/cuda_emulation.h"
// (the emulation header first: the kernels' source compiles against it)
#include "model/ops/flash_attention_kernels.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
#include "testing/attention_reference.h"
#include "testing/tolerance.h"

namespace muongpt {
namespace {

using testing::AttnRef;
using testing::expect_close;
using testing::heads_layout;
using testing::HeadShape;
using testing::Tol;
using Bf16 = __nv_bfloat16;
using FVec = std::vector<float>;

constexpr double kU = 1.0 / 256;  // bf16 unit round-off

std::vector<Bf16> to_bf16(const FVec& v) {
  std::vector<Bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i].bits = float_to_bf16(v[i]);
  return out;
}
FVec to_float(const std::vector<Bf16>& v) {
  FVec out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = bf16_to_float(v[i].bits);
  return out;
}
FVec randn_bf16(size_t n, Rng& rng) {
  FVec v(n);
  for (float& x : v) x = bf16_to_float(float_to_bf16(float(rng.normal())));
  return v;
}
// The launch sequence of model/ops/flash_attention.cu, on the emulation.
struct Outputs {
  FVec y, lse, dq, dk, dv;  // y, dv [B, T, H, dh]; dq, dk [B, H, T, dh]; lse [B, H, T]
};

template <int D>
Outputs run_flash(const HeadShape& s, float scale, const FVec& q, const FVec& k, const FVec& v,
                  const FVec& dy) {
  const int T_ = int(s.T), H = int(s.H);
  const size_t size = q.size(), rows = size_t(s.B * s.H * s.T);
  const std::vector<Bf16> qh = to_bf16(heads_layout(q, s, true)),
                          kh = to_bf16(heads_layout(k, s, true)), vb = to_bf16(v),
                          dyb = to_bf16(dy);
  const Bf16 nan_bits{0xffff};
  std::vector<Bf16> y(size, nan_bits), dq(size, nan_bits), dk(size, nan_bits), dv(size, nan_bits);
  FVec lse(rows, NAN), delta(rows, NAN);
  const dim3 grid{unsigned(row_blocks(s.T)), unsigned(s.B * s.H), 1}, block{kThreads, 1, 1};
  const float scale_log2 = scale * kLog2e;

  emulation::launch(grid, block, kForwardSmem<D>, [&] {
    flash_forward_kernel<D>(y.data(), lse.data(), qh.data(), kh.data(), vb.data(), T_, H,
                            scale_log2);
  });
  const int64_t delta_rows = s.B * s.T * s.H;
  emulation::launch(dim3{unsigned((delta_rows + kDeltaWarps - 1) / kDeltaWarps), 1, 1},
                    dim3{kDeltaWarps * 32, 1, 1}, 0, [&] {
                      flash_delta_kernel(delta.data(), dyb.data(), y.data(), delta_rows, T_, H, D);
                    });
  emulation::launch(grid, block, kDkdvSmem<D>, [&] {
    flash_dkdv_kernel<D, kDkdvQueryTile<D>>(dk.data(), dv.data(), dyb.data(), lse.data(),
                                            delta.data(), qh.data(), kh.data(), vb.data(), T_, H,
                                            scale, scale_log2);
  });
  emulation::launch(grid, block, kDqSmem<D>, [&] {
    flash_dq_kernel<D>(dq.data(), dyb.data(), lse.data(), delta.data(), qh.data(), kh.data(),
                       vb.data(), T_, H, scale, scale_log2);
  });
  return {to_float(y), lse, to_float(dq), to_float(dk), to_float(dv)};
}

void check_shape(const HeadShape& s, uint64_t seed) {
  SCOPED_TRACE(testing::str(s));
  Rng rng(seed);
  const size_t size = size_t(s.B * s.T * s.H * s.dh);
  const FVec q = randn_bf16(size, rng), k = randn_bf16(size, rng), v = randn_bf16(size, rng),
             dy = randn_bf16(size, rng);
  const double scale = 1.0 / std::sqrt(double(s.dh));
  AttnRef ref = testing::attention_reference(q, k, v, dy, s, scale);
  testing::add_flash_magnitudes(ref, q, k, dy, s, scale);
  const Outputs got = s.dh == 64 ? run_flash<64>(s, float(scale), q, k, v, dy)
                                 : run_flash<128>(s, float(scale), q, k, v, dy);
  const Tol tol{1e-5 + 1.05 * kU, 1e-6};
  expect_close("y", got.y, ref.y, tol, ref.mag_y);
  expect_close("lse", got.lse, ref.lse2, Tol{1e-5, 1e-5});
  expect_close("dq", heads_layout(got.dq, s, false), ref.dq, tol, ref.mag_dq);
  expect_close("dk", heads_layout(got.dk, s, false), ref.dk, tol, ref.mag_dk);
  expect_close("dv", got.dv, ref.dv, tol, ref.mag_dv);
}

// T below, at and across the 64-row tiles; several heads and batches (the (b, h) offsets of both
// layouts); both head dims (dh 128 takes the dk/dv kernel's 32-query tiles).
TEST(FlashAttentionEmulated, HeadDim64MatchesTheReference) {
  for (const HeadShape& s : {HeadShape{1, 1, 1, 64}, HeadShape{2, 7, 3, 64},
                             HeadShape{1, 64, 1, 64}, HeadShape{1, 130, 2, 64}})
    check_shape(s, 1000 + uint64_t(s.T));
}

TEST(FlashAttentionEmulated, HeadDim128MatchesTheReference) {
  for (const HeadShape& s : {HeadShape{1, 65, 1, 128}, HeadShape{2, 97, 1, 128}})
    check_shape(s, 2000 + uint64_t(s.T));
}

// The emulation itself: a fragment layout checked against a plain product, and the faults it
// reports instead of computing garbage.
TEST(CudaEmulation, MmaOfLdmatrixFragmentsIsTheMatrixProduct) {
  // One warp: A [16, 16] and Bᵀ [8, 16] in shared memory (rows of 16 + 8 padding), C = A·B via
  // load_a / load_b_t / mma, compared with the product in double (exact: small integers).
  constexpr int ld = 24;
  std::vector<float> want(16 * 8, 0.f), got(16 * 8, NAN);
  float A[16][16], Bt[8][16];
  for (int i = 0; i < 16; ++i)
    for (int kk = 0; kk < 16; ++kk) A[i][kk] = float((i * 3 + kk * 5) % 7 - 3);
  for (int j = 0; j < 8; ++j)
    for (int kk = 0; kk < 16; ++kk) Bt[j][kk] = float((j * 2 + kk) % 5 - 2);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j)
      for (int kk = 0; kk < 16; ++kk) want[size_t(i * 8 + j)] += A[i][kk] * Bt[j][kk];
  emulation::launch(dim3{1, 1, 1}, dim3{32, 1, 1}, sizeof(Bf16) * 32 * ld, [&] {
    Bf16* sm = reinterpret_cast<Bf16*>(emulation::dynamic_smem());
    const int lane = int(threadIdx.x);
    if (lane == 0) {
      for (int i = 0; i < 16; ++i)
        for (int kk = 0; kk < 16; ++kk) sm[i * ld + kk].bits = float_to_bf16(A[i][kk]);
      for (int j = 0; j < 16; ++j)  // rows 16..31: Bt, then 8 zero rows
        for (int kk = 0; kk < 16; ++kk)
          sm[(16 + j) * ld + kk].bits = float_to_bf16(j < 8 ? Bt[j][kk] : 0.f);
    }
    __syncthreads();
    uint32_t a[4], b[4];
    load_a(a, sm, ld, 0, 0);
    load_b_t(b, sm + 16 * ld, ld, 0, 0);
    float c[4] = {0, 0, 0, 0};
    mma(c, a, b);
    const int g = lane / 4, t = lane % 4;
    got[size_t(g * 8 + 2 * t)] = c[0], got[size_t(g * 8 + 2 * t + 1)] = c[1];
    got[size_t((g + 8) * 8 + 2 * t)] = c[2], got[size_t((g + 8) * 8 + 2 * t + 1)] = c[3];
  });
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "element " << i;
}

TEST(CudaEmulation, ReportsDeadlocksAndBadSharedMemoryAddresses) {
  // Half a warp waits in a shuffle the other half never reaches.
  try {
    emulation::launch(dim3{1, 1, 1}, dim3{32, 1, 1}, 0, [] {
      if (threadIdx.x < 16) (void)__shfl_xor_sync(0xffffffffu, 1.f, 1);
    });
    ADD_FAILURE() << "no deadlock reported";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deadlock"), std::string::npos) << e.what();
  }
  // An ldmatrix row past the end of shared memory.
  try {
    emulation::launch(dim3{1, 1, 1}, dim3{32, 1, 1}, 256, [] {
      uint32_t r[4];
      ldmatrix_x4(r, reinterpret_cast<const Bf16*>(emulation::dynamic_smem()) + 8 * threadIdx.x);
    });
    ADD_FAILURE() << "an out-of-range ldmatrix was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the block's shared memory"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace muongpt
