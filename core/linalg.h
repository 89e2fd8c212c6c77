// Dense symmetric eigendecomposition through LAPACK (?syevd), for the exact dualizers (polar,
// Schatten-p) and the rank telemetry, which both work on the smaller Gram matrix of a weight or
// activation. Row-major in, row-major out.
#pragma once

#include <cstdint>

namespace muongpt {

// A: [n, n] symmetric (only its values are read). On return A holds the eigenvectors as
// COLUMNS (A[i * n + k] is component i of eigenvector k) and w[n] the eigenvalues in ascending
// order. Throws Error if LAPACK reports a failure.
void sym_eig(int64_t n, double* A, double* w);
// Eigenvalues only (ascending), cheaper; A is destroyed.
void sym_eigvals(int64_t n, double* A, double* w);
// Eigenvalues of the symmetric tridiagonal matrix with diagonal d[n] and off-diagonal e[n − 1],
// in ascending order into d (e is destroyed). O(n²): the Lanczos checks (train/spectra.h).
void tridiag_eigvals(int64_t n, double* d, double* e);

}  // namespace muongpt
