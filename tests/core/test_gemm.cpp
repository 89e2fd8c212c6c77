// gemm() (CBLAS when built with it) and gemm_plain() against a direct triple loop, every
// transpose combination, strided operands, alpha/beta, both precisions.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "core/gemm.h"
#include "core/rng.h"

namespace muongpt {
namespace {

template <typename T>
void check_all(void (*fn)(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*,
                          int64_t, T, T*, int64_t),
               double tol) {
  Rng rng(11);
  const int64_t M = 13, N = 9, K = 17, pad = 3;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
      std::vector<T> A((ta ? K : M) * lda), B((tb ? N : K) * ldb), C(M * ldc);
      for (auto& x : A) x = T(rng.normal());
      for (auto& x : B) x = T(rng.normal());
      for (auto& x : C) x = T(rng.normal());
      std::vector<T> want = C;
      const T alpha = T(0.7), beta = T(-1.3);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) {
          double acc = 0;
          for (int64_t k = 0; k < K; ++k)
            acc += double(ta ? A[k * lda + i] : A[i * lda + k]) *
                   double(tb ? B[j * ldb + k] : B[k * ldb + j]);
          want[i * ldc + j] = T(alpha * acc + beta * double(C[i * ldc + j]));
        }
      fn(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N + pad; ++j)
          ASSERT_NEAR(C[i * ldc + j], want[i * ldc + j], tol)
              << "ta=" << ta << " tb=" << tb << " (" << i << ", " << j << ")";
    }
  }
  // beta = 0 ignores what C held, NaN included.
  std::vector<T> A(4, T(1)), B(4, T(1)), C(4, std::numeric_limits<T>::quiet_NaN());
  fn(false, false, 2, 2, 2, T(1), A.data(), 2, B.data(), 2, T(0), C.data(), 2);
  for (T c : C) EXPECT_EQ(c, T(2));
}

TEST(Gemm, DispatchFloat) {
  check_all<float>(gemm<float>, 1e-4);
}
TEST(Gemm, DispatchDouble) {
  check_all<double>(gemm<double>, 1e-12);
}
TEST(Gemm, PlainFloat) {
  check_all<float>(gemm_plain<float>, 1e-4);
}
TEST(Gemm, PlainDouble) {
  check_all<double>(gemm_plain<double>, 1e-12);
}

TEST(Gemm, GramsMatchGemmOnBothTriangles) {
  Rng rng(12);
  const int64_t k = 23, n = 11, lda = n + 2;
  std::vector<double> A(k * lda), C(n * n, 5.0), want(n * n);
  for (auto& x : A) x = rng.normal();
  gemm_plain(true, false, n, n, k, 2.0, A.data(), lda, A.data(), lda, 0.0, want.data(), n);
  for (int64_t i = 0; i < n * n; ++i) want[i] += 0.5 * 5.0;
  gram(k, n, 2.0, A.data(), lda, 0.5, C.data(), n);
  for (int64_t i = 0; i < n * n; ++i) EXPECT_NEAR(C[i], want[i], 1e-10) << i;

  // gram_rows: the Gram matrix of the rows of B [m, k], in float (Newton–Schulz's A = Y Yᵀ).
  const int64_t m = 9, ldb = k + 1;
  std::vector<float> B(m * ldb), G(m * m, 5.0f), want_rows(m * m);
  for (auto& x : B) x = float(rng.normal());
  gemm_plain(false, true, m, m, k, 2.0f, B.data(), ldb, B.data(), ldb, 0.0f, want_rows.data(), m);
  for (int64_t i = 0; i < m * m; ++i) want_rows[i] += 0.5f * 5.0f;
  gram_rows(m, k, 2.0f, B.data(), ldb, 0.5f, G.data(), m);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < m; ++j) {
      EXPECT_NEAR(G[i * m + j], want_rows[i * m + j], 1e-4) << i << ", " << j;
      EXPECT_EQ(G[i * m + j], G[j * m + i]) << "exactly symmetric";
    }
}

}  // namespace
}  // namespace muongpt
