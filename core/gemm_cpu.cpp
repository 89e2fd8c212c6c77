#include <limits>
#include <type_traits>

#include "core/error.h"
#include "core/gemm.h"

#ifdef MUONGPT_HAVE_CBLAS
#include <cblas.h>
#endif

namespace muongpt {

template <typename T>
void gemm_plain(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i) {
    T* c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = beta == T(0) ? T(0) : beta * c[j];
    if (alpha == T(0)) continue;
    if (!trans_b) {  // stream rows of B: c[i, :] += alpha·a[i, k]·B[k, :]
      for (int64_t k = 0; k < K; ++k) {
        T a = alpha * (trans_a ? A[k * lda + i] : A[i * lda + k]);
        const T* b = B + k * ldb;
        for (int64_t j = 0; j < N; ++j) c[j] += a * b[j];
      }
    } else {  // dot products of A's row i with B's rows j
      for (int64_t j = 0; j < N; ++j) {
        const T* b = B + j * ldb;
        T acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += (trans_a ? A[k * lda + i] : A[i * lda + k]) * b[k];
        c[j] += alpha * acc;
      }
    }
  }
}

void set_blas_threads([[maybe_unused]] int n) {
#if defined(MUONGPT_HAVE_CBLAS) && defined(OPENBLAS_VERSION)
  openblas_set_num_threads(n);
#endif
}

int blas_threads() {
#if defined(MUONGPT_HAVE_CBLAS) && defined(OPENBLAS_VERSION)
  return openblas_get_num_threads();
#else
  return 1;
#endif
}

bool gemm_uses_cblas() {
#ifdef MUONGPT_HAVE_CBLAS
  return true;
#else
  return false;
#endif
}

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
#ifdef MUONGPT_HAVE_CBLAS
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  MG_CHECK(M <= kMax && N <= kMax && K <= kMax && lda <= kMax && ldb <= kMax && ldc <= kMax,
           "GEMM dimensions exceed the BLAS integer range");
  if (K == 0) {  // BLAS would be fine, but keep beta = 0 semantics explicit
    gemm_plain(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  auto ta = trans_a ? CblasTrans : CblasNoTrans;
  auto tb = trans_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb),
                beta, C, int(ldc));
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, int(M), int(N), int(K), alpha, A, int(lda), B, int(ldb),
                beta, C, int(ldc));
  }
#else
  gemm_plain(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

namespace {

// C[n, n] = alpha · op(A)ᵀ op(A) + beta · C with op(A) = A [k, n] (cols) or Aᵀ for A [n, k].
template <typename T>
void syrk(bool cols, int64_t n, int64_t k, T alpha, const T* A, int64_t lda, T beta, T* C,
          int64_t ldc) {
  if (n == 0) return;
#ifdef MUONGPT_HAVE_CBLAS
  constexpr int64_t kMax = std::numeric_limits<int>::max();
  MG_CHECK(n <= kMax && k <= kMax && lda <= kMax && ldc <= kMax,
           "Gram dimensions exceed the BLAS integer range");
  const auto trans = cols ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    cblas_ssyrk(CblasRowMajor, CblasUpper, trans, int(n), int(k), alpha, A, int(lda), beta, C,
                int(ldc));
  } else {
    cblas_dsyrk(CblasRowMajor, CblasUpper, trans, int(n), int(k), alpha, A, int(lda), beta, C,
                int(ldc));
  }
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) C[i * ldc + j] = C[j * ldc + i];
#else
  gemm_plain(cols, !cols, n, n, k, alpha, A, lda, A, lda, beta, C, ldc);
#endif
}

}  // namespace

template <typename T>
void gram(int64_t k, int64_t n, T alpha, const T* A, int64_t lda, T beta, T* C, int64_t ldc) {
  syrk(true, n, k, alpha, A, lda, beta, C, ldc);
}

template <typename T>
void gram_rows(int64_t n, int64_t k, T alpha, const T* A, int64_t lda, T beta, T* C, int64_t ldc) {
  syrk(false, n, k, alpha, A, lda, beta, C, ldc);
}

#define MG_INSTANTIATE_GEMM(T)                                                                 \
  template void gemm<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t, const T*, \
                        int64_t, T, T*, int64_t);                                              \
  template void gemm_plain<T>(bool, bool, int64_t, int64_t, int64_t, T, const T*, int64_t,     \
                              const T*, int64_t, T, T*, int64_t);                              \
  template void gram<T>(int64_t, int64_t, T, const T*, int64_t, T, T*, int64_t);               \
  template void gram_rows<T>(int64_t, int64_t, T, const T*, int64_t, T, T*, int64_t);
MG_INSTANTIATE_GEMM(float)
MG_INSTANTIATE_GEMM(double)

}  // namespace muongpt
