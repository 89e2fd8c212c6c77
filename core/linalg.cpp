#include "core/linalg.h"

#include <vector>

#include "core/error.h"

extern "C" {
// LAPACK (Fortran interface): divide-and-conquer symmetric eigensolver.
void dsyevd_(const char* jobz, const char* uplo, const int* n, double* a, const int* lda, double* w,
             double* work, const int* lwork, int* iwork, const int* liwork, int* info);
// Eigenvalues of a symmetric tridiagonal matrix (root-free QR), O(n²).
void dsterf_(const int* n, double* d, double* e, int* info);
}

namespace muongpt {

namespace {
void syevd(char jobz, int64_t n64, double* A, double* w) {
  if (n64 == 0) return;
  MG_CHECK(n64 < (1 << 30), "eigenproblem too large: ", n64);
  const int n = static_cast<int>(n64);
  // LAPACK is column-major; a symmetric matrix is its own transpose, and the eigenvector
  // matrix comes back column-major, i.e. transposed when read row-major: we transpose it.
  const char uplo = 'L';
  int info = 0, lwork = -1, liwork = -1, iwork_query = 0;
  double work_query = 0;
  dsyevd_(&jobz, &uplo, &n, A, &n, w, &work_query, &lwork, &iwork_query, &liwork, &info);
  if (info != 0) fail("lapack", "dsyevd workspace query failed (info ", info, ")");
  lwork = static_cast<int>(work_query);
  liwork = iwork_query;
  std::vector<double> work(static_cast<size_t>(lwork));
  std::vector<int> iwork(static_cast<size_t>(liwork));
  dsyevd_(&jobz, &uplo, &n, A, &n, w, work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info != 0)
    fail("lapack", "dsyevd failed to converge on a ", n, "x", n, " matrix (info ", info, ")");
  if (jobz == 'V') {
    for (int64_t i = 0; i < n64; ++i)
      for (int64_t k = i + 1; k < n64; ++k) std::swap(A[i * n64 + k], A[k * n64 + i]);
  }
}
}  // namespace

void sym_eig(int64_t n, double* A, double* w) {
  syevd('V', n, A, w);
}
void sym_eigvals(int64_t n, double* A, double* w) {
  syevd('N', n, A, w);
}

void tridiag_eigvals(int64_t n64, double* d, double* e) {
  if (n64 == 0) return;
  MG_CHECK(n64 < (1 << 30), "eigenproblem too large: ", n64);
  const int n = static_cast<int>(n64);
  int info = 0;
  dsterf_(&n, d, e, &info);
  if (info != 0)
    fail("lapack", "dsterf failed to converge on a ", n, "x", n, " tridiagonal matrix (info ", info,
         ")");
}

}  // namespace muongpt
