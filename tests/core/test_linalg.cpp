#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/linalg.h"
#include "core/rng.h"

namespace muongpt {
namespace {

TEST(Linalg, SymEigReconstructsTheMatrix) {
  const int64_t n = 7;
  Rng rng(3);
  std::vector<double> M(n * n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j <= i; ++j) M[i * n + j] = M[j * n + i] = rng.normal();
  std::vector<double> V = M, w(n), w_only(n), copy = M;
  sym_eig(n, V.data(), w.data());
  sym_eigvals(n, copy.data(), w_only.data());
  for (int64_t k = 1; k < n; ++k) EXPECT_LE(w[k - 1], w[k]);
  for (int64_t k = 0; k < n; ++k) EXPECT_NEAR(w[k], w_only[k], 1e-12);
  // M = V diag(w) Vᵀ with eigenvectors in the columns of V.
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t k = 0; k < n; ++k) s += V[i * n + k] * w[k] * V[j * n + k];
      EXPECT_NEAR(s, M[i * n + j], 1e-12);
    }
  // Diagonal matrix: eigenvalues are the diagonal, sorted.
  std::vector<double> D = {3, 0, 0, 0, -1, 0, 0, 0, 2}, dw(3);
  sym_eig(3, D.data(), dw.data());
  EXPECT_NEAR(dw[0], -1, 1e-14);
  EXPECT_NEAR(dw[1], 2, 1e-14);
  EXPECT_NEAR(dw[2], 3, 1e-14);
}

}  // namespace
}  // namespace muongpt
