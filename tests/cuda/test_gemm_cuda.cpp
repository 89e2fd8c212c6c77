// gemm_cuda (cuBLASLt) against the CPU gemm() in double precision.
//
// Inputs are drawn U(-1, 1) and rounded to their storage type on the host first; the reference
// runs on the rounded values (in double), so what is left is the GPU's fp32 accumulation and, for
// a bf16 C, the final rounding. Per element of C, with mag = |α|·Σ_k |a_ik||b_kj| + |β|·|c_ij|:
//   C in F32:   |gpu − ref| ≤ 1e-5 · mag
//   C in BF16:  |gpu − ref| ≤ 2^-8 · |ref| + 1.01e-5 · mag
// 1e-5 · mag: fp32 has unit round-off u = 2^-24 ≈ 6e-8; the worst-case bound of a K-term sum is
// K·u·mag (4.6e-5 · mag at K = 768), but rounding errors of random-sign terms add like a random
// walk and are relative to partial sums ~√K smaller than mag, so actual errors sit near 1e-7 ·
// mag; products of bf16 values are exact in fp32, so bf16 inputs add nothing. 1e-5 is two orders
// above that and still far below any indexing or transpose mistake (which gives O(1) · mag).
// 2^-8 · |ref|: rounding the fp32 result to bf16 (8-bit significand) to nearest is off by at most
// half an ulp, 2^-8 relative; the 1.01 covers that rounding of the accumulation error itself.
//
// Every layout puts NaN in the padding of A and B (a read past a row poisons the result) and a
// sentinel in the padding of C (a write past a row is caught); beta = 0 runs start with NaN in
// C itself (it must not leak).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/gemm.h"
#include "core/gemm_cuda.h"
#include "core/rng.h"
#include "testing/cuda_testing.h"
#include "testing/errors.h"

#ifdef MUONGPT_HAVE_CUDA
#include "core/cublas_check.h"

namespace muongpt {
namespace {

using testing::DeviceArray;

constexpr double kAccTol = 1e-5;          // fp32 accumulation, relative to mag
constexpr double kBf16Round = 1.0 / 256;  // 2^-8: one round-to-nearest into bf16
constexpr float kSentinel = 4096.0f;      // exact in bf16
const float kNaN = std::numeric_limits<float>::quiet_NaN();

float round_to(DType t, float v) {
  return t == DType::bf16 ? bf16_to_float(float_to_bf16(v)) : v;
}

// A device buffer holding host floats in `type` (F32 or BF16, already representable).
class DeviceBuf {
 public:
  DeviceBuf(DType type, const std::vector<float>& host) : type_(type) {
    if (type == DType::f32) {
      f32_ = std::make_unique<DeviceArray<float>>(host);
    } else {
      std::vector<uint16_t> h(host.size());
      for (size_t i = 0; i < host.size(); ++i) h[i] = float_to_bf16(host[i]);
      bf16_ = std::make_unique<DeviceArray<uint16_t>>(h);
    }
  }
  void* get() const { return f32_ ? static_cast<void*>(f32_->get()) : bf16_->get(); }
  std::vector<float> download() const {
    if (f32_) return f32_->download();
    const std::vector<uint16_t> h = bf16_->download();
    std::vector<float> out(h.size());
    for (size_t i = 0; i < h.size(); ++i) out[i] = bf16_to_float(h[i]);
    return out;
  }
  DType type() const { return type_; }

 private:
  DType type_;
  std::unique_ptr<DeviceArray<float>> f32_;
  std::unique_ptr<DeviceArray<uint16_t>> bf16_;
};

struct Case {
  bool ta = false, tb = false;
  int64_t M = 1, N = 1, K = 1;
  DType ab = DType::f32, c = DType::f32;
  int64_t pad = 0;  // extra elements at the end of every row of A, B and C
  float alpha = 1.0f, beta = 0.0f;
  int64_t count = 1;
  int64_t gap = 0;  // extra elements between consecutive matrices of a batch
  bool broadcast_a = false, broadcast_b = false;
};

std::string describe(const Case& c) {
  std::ostringstream os;
  os << (c.ta ? "Aᵀ" : "A") << (c.tb ? "Bᵀ" : "B") << " M=" << c.M << " N=" << c.N << " K=" << c.K
     << " " << dtype_name(c.ab) << "→" << dtype_name(c.c) << " pad=" << c.pad
     << " alpha=" << c.alpha << " beta=" << c.beta << " count=" << c.count << " gap=" << c.gap
     << (c.broadcast_a ? " bcastA" : "") << (c.broadcast_b ? " bcastB" : "");
  return os.str();
}

// Runs one product on the GPU, checks every element of the C buffer (values against the double
// reference, padding against the sentinel) and returns what the GPU wrote.
std::vector<float> check_case(const Case& c, uint64_t seed, CudaStream stream = nullptr) {
  SCOPED_TRACE(describe(c));
  Rng rng(seed);
  const int64_t rows_a = c.ta ? c.K : c.M, width_a = c.ta ? c.M : c.K;
  const int64_t rows_b = c.tb ? c.N : c.K, width_b = c.tb ? c.K : c.N;
  const int64_t lda = width_a + c.pad, ldb = width_b + c.pad, ldc = c.N + c.pad;
  const int64_t mat_a = rows_a * lda, mat_b = rows_b * ldb, mat_c = c.M * ldc;
  const int64_t sa = c.broadcast_a ? 0 : mat_a + c.gap;
  const int64_t sb = c.broadcast_b ? 0 : mat_b + c.gap;
  const int64_t sc = mat_c + c.gap;
  const int64_t na = (c.count - 1) * sa + mat_a, nb = (c.count - 1) * sb + mat_b;
  const int64_t nc = (c.count - 1) * sc + mat_c;

  std::vector<float> A(na, kNaN), B(nb, kNaN), C(nc, kSentinel);
  std::vector<double> Ad(na, 0.0), Bd(nb, 0.0), Cd(nc, 0.0);  // the reference's copies
  std::vector<char> in_c(nc, 0);
  for (int64_t b = 0; b < c.count; ++b) {
    for (int64_t r = 0; r < rows_a; ++r)
      for (int64_t k = 0; k < width_a; ++k) {
        const int64_t at = b * sa + r * lda + k;
        A[at] = round_to(c.ab, float(rng.uniform(-1.0, 1.0)));
        Ad[at] = A[at];
      }
    for (int64_t r = 0; r < rows_b; ++r)
      for (int64_t k = 0; k < width_b; ++k) {
        const int64_t at = b * sb + r * ldb + k;
        B[at] = round_to(c.ab, float(rng.uniform(-1.0, 1.0)));
        Bd[at] = B[at];
      }
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = 0; j < c.N; ++j) {
        const int64_t at = b * sc + i * ldc + j;
        in_c[at] = 1;
        if (c.beta == 0.0f) {
          C[at] = kNaN;  // garbage that must not leak
        } else {
          C[at] = round_to(c.c, float(rng.uniform(-1.0, 1.0)));
          Cd[at] = C[at];
        }
      }
  }

  // Reference and magnitude, in double.
  std::vector<double> ref = Cd, mag(nc, 0.0), absA(na), absB(nb);
  for (int64_t i = 0; i < na; ++i) absA[i] = std::fabs(Ad[i]);
  for (int64_t i = 0; i < nb; ++i) absB[i] = std::fabs(Bd[i]);
  for (int64_t i = 0; i < nc; ++i) mag[i] = std::fabs(Cd[i]);
  for (int64_t b = 0; b < c.count; ++b) {
    gemm<double>(c.ta, c.tb, c.M, c.N, c.K, c.alpha, Ad.data() + b * sa, lda, Bd.data() + b * sb,
                 ldb, c.beta, ref.data() + b * sc, ldc);
    gemm<double>(c.ta, c.tb, c.M, c.N, c.K, std::fabs(c.alpha), absA.data() + b * sa, lda,
                 absB.data() + b * sb, ldb, std::fabs(c.beta), mag.data() + b * sc, ldc);
  }

  DeviceBuf dA(c.ab, A), dB(c.ab, B), dC(c.c, C);
  GemmBatch batch;
  batch.count = c.count;
  batch.stride_a = sa, batch.stride_b = sb, batch.stride_c = sc;
  gemm_cuda(stream, c.ta, c.tb, c.M, c.N, c.K, c.alpha, dA.get(), lda, dB.get(), ldb, c.beta,
            dC.get(), ldc, c.ab, c.c, batch);
  const std::vector<float> got = dC.download();

  int64_t bad = 0;
  double worst = 0;  // largest |error| / bound seen
  for (int64_t at = 0; at < nc; ++at) {
    if (!in_c[at]) {
      if (std::memcmp(&got[at], &kSentinel, sizeof(float)) != 0 && bad++ < 5)
        ADD_FAILURE() << "padding/gap element " << at << " overwritten: " << got[at];
      continue;
    }
    const double bound =
        (c.c == DType::bf16 ? kBf16Round * std::fabs(ref[at]) + 1.01 * kAccTol * mag[at]
                            : kAccTol * mag[at]) +
        1e-30;
    const double err = std::fabs(double(got[at]) - ref[at]);
    if (!(err <= bound)) {
      if (bad++ < 5)
        ADD_FAILURE() << "element " << at << " (batch " << at / sc << ", row " << (at % sc) / ldc
                      << ", col " << (at % sc) % ldc << "): gpu " << got[at] << " ref " << ref[at]
                      << " |err| " << err << " bound " << bound;
    } else {
      worst = std::max(worst, err / bound);
    }
  }
  EXPECT_EQ(bad, 0) << "elements out of bounds (worst in-bound error " << worst << " of bound)";
  return got;
}

const Case kShapes[] = {
    {.M = 1, .N = 1, .K = 1},   {.M = 37, .N = 53, .K = 129}, {.M = 256, .N = 512, .K = 768},
    {.M = 1, .N = 77, .K = 33}, {.M = 45, .N = 1, .K = 64},   {.M = 3, .N = 5, .K = 2},
};

void check_all_layouts(DType ab, DType c_type) {
  uint64_t seed = 100;
  for (const Case& shape : kShapes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int64_t pad : {0, 3})
          for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{-0.75f, 0.5f}}) {
            Case c = shape;
            c.ta = ta, c.tb = tb, c.ab = ab, c.c = c_type, c.pad = pad;
            c.alpha = alpha, c.beta = beta;
            check_case(c, ++seed);
          }
}

TEST(GemmCuda, F32AllTransposesShapesAndStrides) {
  MG_REQUIRE_GPU();
  check_all_layouts(DType::f32, DType::f32);
}

TEST(GemmCuda, Bf16InF32OutAllTransposesShapesAndStrides) {
  MG_REQUIRE_GPU();
  check_all_layouts(DType::bf16, DType::f32);
}

TEST(GemmCuda, Bf16InBf16OutAllTransposesShapesAndStrides) {
  MG_REQUIRE_GPU();
  check_all_layouts(DType::bf16, DType::bf16);
}

// Batches: contiguous, with odd gaps between matrices (so every other matrix is only 2- or
// 4-byte aligned), and with A or B shared by every product (stride 0).
TEST(GemmCuda, StridedBatchesAndBroadcast) {
  MG_REQUIRE_GPU();
  uint64_t seed = 500;
  for (auto [ab, c_type] : {std::pair{DType::f32, DType::f32}, std::pair{DType::bf16, DType::f32},
                            std::pair{DType::bf16, DType::bf16}})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (int variant = 0; variant < 4; ++variant) {
          Case c{.ta = ta, .tb = tb, .M = 33, .N = 47, .K = 65, .ab = ab, .c = c_type, .pad = 1};
          c.alpha = 0.9f, c.beta = variant % 2 ? 0.5f : 0.0f;
          c.count = 3;
          c.gap = variant == 1 ? 3 : 0;
          c.broadcast_b = variant == 2;
          c.broadcast_a = variant == 3;
          check_case(c, ++seed);
        }
  // Batch of 1 with nonzero strides is a plain product; a larger batch of small matrices.
  check_case({.M = 7, .N = 9, .K = 11, .ab = DType::bf16, .c = DType::bf16, .count = 1, .gap = 5},
             ++seed);
  check_case({.ta = false,
              .tb = true,
              .M = 65,
              .N = 65,
              .K = 64,
              .ab = DType::bf16,
              .c = DType::bf16,
              .alpha = 0.12f,
              .count = 12},
             ++seed);
}

// K = 0 and alpha = 0 leave C = beta·C (A and B are not read: they hold NaN here), exactly.
TEST(GemmCuda, EmptySumScalesC) {
  MG_REQUIRE_GPU();
  for (DType c_type : {DType::f32, DType::bf16})
    for (float beta : {0.0f, 0.5f, -2.0f})
      for (int64_t K : {0, 5}) {
        const int64_t M = 5, N = 7, ldc = 9, count = 2, stride_c = M * ldc + 1;
        const float alpha = K == 0 ? 1.0f : 0.0f;
        std::vector<float> C(count * stride_c, kSentinel), want = C;
        Rng rng(K + 17);
        for (int64_t b = 0; b < count; ++b)
          for (int64_t i = 0; i < M; ++i)
            for (int64_t j = 0; j < N; ++j) {
              const int64_t at = b * stride_c + i * ldc + j;
              C[at] = beta == 0.0f ? kNaN : round_to(c_type, float(rng.uniform(-4.0, 4.0)));
              want[at] = beta == 0.0f ? 0.0f : round_to(c_type, beta * C[at]);
            }
        std::vector<float> garbage(64, kNaN);
        DeviceBuf dA(DType::bf16, garbage), dB(DType::bf16, garbage), dC(c_type, C);
        gemm_cuda(nullptr, false, false, M, N, K, alpha, dA.get(), 8, dB.get(), 8, beta, dC.get(),
                  ldc, DType::bf16, c_type, {.count = count, .stride_c = stride_c});
        const std::vector<float> got = dC.download();
        for (size_t i = 0; i < got.size(); ++i)
          ASSERT_EQ(std::memcmp(&got[i], &want[i], sizeof(float)), 0)
              << dtype_name(c_type) << " beta " << beta << " K " << K << " at " << i << ": "
              << got[i] << " want " << want[i];
      }
  // M = 0 or N = 0: nothing is touched (null pointers are fine).
  gemm_cuda(nullptr, false, false, 0, 5, 5, 1.0f, nullptr, 5, nullptr, 5, 0.0f, nullptr, 5,
            DType::f32, DType::f32);
  gemm_cuda(nullptr, true, true, 5, 0, 5, 1.0f, nullptr, 5, nullptr, 5, 0.0f, nullptr, 5,
            DType::f32, DType::f32);
}

// The plan cache: the same call twice gives the same bits; shapes that differ only in leading
// dimension, beta or pointer alignment get their own plans (interleaved calls stay correct).
TEST(GemmCuda, PlanCacheReusesAndKeepsKeysApart) {
  MG_REQUIRE_GPU();
  const Case x{.M = 96, .N = 80, .K = 72, .ab = DType::bf16, .c = DType::f32};
  Case y = x;
  y.pad = 5;  // odd leading dimensions
  Case z = x;
  z.beta = 0.5f;
  Case w = x;
  w.count = 2, w.gap = 1;  // the second matrix is only 2-byte (A, B) / 4-byte (C) aligned
  const std::vector<float> first = check_case(x, 1);
  check_case(y, 2);
  check_case(z, 3);
  check_case(w, 4);
  const std::vector<float> again = check_case(x, 1);
  ASSERT_EQ(first.size(), again.size());
  EXPECT_EQ(std::memcmp(first.data(), again.data(), sizeof(float) * first.size()), 0)
      << "the same product twice is not bit-identical";
}

// Products on two streams (each with its own workspace) agree with each other and the reference.
TEST(GemmCuda, WorksOnSeveralStreams) {
  MG_REQUIRE_GPU();
  cudaStream_t s1, s2;
  MG_CUDA(cudaStreamCreate(&s1));
  MG_CUDA(cudaStreamCreate(&s2));
  const Case c{.ta = true, .M = 200, .N = 136, .K = 520, .ab = DType::bf16, .c = DType::bf16};
  const std::vector<float> a = check_case(c, 9, s1);
  const std::vector<float> b = check_case(c, 9, s2);
  EXPECT_EQ(std::memcmp(a.data(), b.data(), sizeof(float) * a.size()), 0);
  MG_CUDA(cudaStreamDestroy(s1));
  MG_CUDA(cudaStreamDestroy(s2));
}

// Argument errors are reported before the device is touched (so these run without a GPU too).
TEST(GemmCudaArgs, RejectsBadArguments) {
  using testing::error_of;
  auto has = [](const std::string& msg, const std::string& part) {
    return msg.find(part) != std::string::npos;
  };
  float dummy = 0;
  void* p = &dummy;
  EXPECT_TRUE(has(error_of([&] {
                    gemm_cuda(nullptr, false, false, 2, 2, 2, 1, p, 2, p, 2, 0, p, 2, DType::f32,
                              DType::bf16);
                  }),
                  "gemm_cuda: unsupported types: A/B F32, C BF16"));
  EXPECT_TRUE(has(error_of([&] {
                    gemm_cuda(nullptr, false, false, 2, 2, 2, 1, p, 2, p, 2, 0, p, 2, DType::f64,
                              DType::f64);
                  }),
                  "unsupported types"));
  EXPECT_TRUE(has(error_of([&] {
                    gemm_cuda(nullptr, false, false, -1, 2, 2, 1, p, 2, p, 2, 0, p, 2, DType::f32,
                              DType::f32);
                  }),
                  "negative size"));
  EXPECT_TRUE(has(error_of([&] {
                    gemm_cuda(nullptr, false, false, 2, 3, 2, 1, p, 2, p, 3, 0, p, 2, DType::f32,
                              DType::f32);
                  }),
                  "ldc 2 is smaller than N 3"));
  EXPECT_TRUE(has(error_of([&] {
                    gemm_cuda(nullptr, true, false, 3, 2, 2, 1, p, 2, p, 2, 0, p, 2, DType::f32,
                              DType::f32);
                  }),
                  "lda 2 is smaller than op(A)'s row 3"));
  EXPECT_TRUE(has(error_of([&] {
                    gemm_cuda(nullptr, false, true, 2, 2, 3, 1, p, 3, p, 2, 0, p, 2, DType::f32,
                              DType::f32);
                  }),
                  "ldb 2 is smaller than op(B)'s row 3"));
  EXPECT_TRUE(has(error_of([&] {
                    gemm_cuda(nullptr, false, false, 2, 2, 2, 1, p, 2, p, 2, 0, p, 2, DType::f32,
                              DType::f32, {.count = 2, .stride_a = 4, .stride_b = 4});
                  }),
                  "batch stride of C must be positive"));
}

TEST(CublasCheck, NamesTheCallTheFileAndTheStatus) {
  const std::string blas = testing::error_of([] { MG_CUBLAS(CUBLAS_STATUS_INVALID_VALUE); });
  EXPECT_NE(blas.find("cublas: CUBLAS_STATUS_INVALID_VALUE failed at "), std::string::npos) << blas;
  EXPECT_NE(blas.find("test_gemm_cuda.cpp:"), std::string::npos) << blas;
  EXPECT_NE(blas.find(": CUBLAS_STATUS_INVALID_VALUE ("), std::string::npos) << blas;
  const std::string solver =
      testing::error_of([] { MG_CUSOLVER(CUSOLVER_STATUS_EXECUTION_FAILED); });
  EXPECT_NE(solver.find("cusolver: CUSOLVER_STATUS_EXECUTION_FAILED failed at "), std::string::npos)
      << solver;
  EXPECT_NE(solver.find("test_gemm_cuda.cpp:"), std::string::npos) << solver;
  EXPECT_NE(solver.find(": CUSOLVER_STATUS_EXECUTION_FAILED (status 6)"), std::string::npos)
      << solver;
  EXPECT_EQ(testing::error_of([] { MG_CUBLAS(CUBLAS_STATUS_SUCCESS); }), "(no error)");
}

}  // namespace
}  // namespace muongpt
#endif
