// CPU matrix multiply, row-major: C[M, N] = alpha · op(A) · op(B) + beta · C, where op(X) is X or
// Xᵀ. A is [M, K] (or [K, M] when trans_a), B is [K, N] (or [N, K] when trans_b); ld* are row
// strides in elements. beta = 0 ignores C's old contents (NaN in C does not leak through).
//
// gemm() goes through CBLAS (OpenBLAS) when the build found it, else through gemm_plain();
// gemm_plain() is always built so tests compare the two.
#pragma once

#include <cstdint>

namespace muongpt {

template <typename T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

template <typename T>
void gemm_plain(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Gram matrix C[n, n] = alpha · AᵀA + beta · C for A [k, n] (row stride lda), filled on both
// triangles (with beta ≠ 0, C must be symmetric: its upper triangle is the one read).
// Through CBLAS ?syrk (half the work of a GEMM) when available.
template <typename T>
void gram(int64_t k, int64_t n, T alpha, const T* A, int64_t lda, T beta, T* C, int64_t ldc);
// The same over the rows: C[n, n] = alpha · A Aᵀ + beta · C for A [n, k] (row stride lda).
template <typename T>
void gram_rows(int64_t n, int64_t k, T alpha, const T* A, int64_t lda, T beta, T* C, int64_t ldc);

bool gemm_uses_cblas();
// Threads OpenBLAS may use (no effect with another BLAS or without one), and how many it may use
// now (1 with another BLAS or without one).
void set_blas_threads(int n);
int blas_threads();

}  // namespace muongpt
