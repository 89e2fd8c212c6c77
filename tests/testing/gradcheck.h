// Finite-difference gradient checks in double precision, shared by the op and model tests.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "core/rng.h"

namespace muongpt::testing {

// Fourth-order central difference of `loss` w.r.t. x[i]:
//   (−f(x + 2h) + 8 f(x + h) − 8 f(x − h) + f(x − 2h)) / 12h
// Its truncation error is O(h⁴), so h can be large enough (1e-4 to 2e-4) that float64 round-off
// in the loss stays near 1e-11 absolute.
inline double numeric_grad(double* xi, const std::function<double()>& loss, double h) {
  const double x0 = *xi;
  auto at = [&](double delta) {
    *xi = x0 + delta;
    return loss();
  };
  double g = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h);
  *xi = x0;
  return g;
}

// The error measure of every gradient check: |a − n| / max(|a|, |n|, floor), where the floor is
// 1e-3 of the tensor's largest analytic gradient, so entries whose true gradient is (near) zero
// are judged against the tensor's scale rather than against round-off.
inline double grad_error(double analytic, double numeric, double floor) {
  return std::abs(analytic - numeric) /
         std::max({std::abs(analytic), std::abs(numeric), floor, 1e-300});
}

struct GradCheckResult {
  double max_error = 0;
  size_t worst_index = 0;
  double worst_analytic = 0, worst_numeric = 0;
  int checked = 0, skipped = 0;
};

// Checks `samples` entries of x (the largest-gradient entry plus random ones; all when x is
// small) against the analytic gradient `grad`.
//
// Non-smooth points: ReLU² is only C¹ at 0, and a stencil that straddles a kink is not accurate
// to O(h⁴). Each entry is therefore differenced at h and h/2; where the two estimates disagree by
// more than `tol` the function is not smooth enough there and the entry is skipped (counted)
// and another drawn. A wrong analytic gradient cannot hide this way: the two estimates of a
// smooth function agree with each other, and disagree with the wrong value.
inline GradCheckResult check_entries(double* x, const double* grad, size_t n,
                                     const std::function<double()>& loss, int samples, Rng& rng,
                                     double tol, double h = 2e-4) {
  double scale = 0;
  size_t argmax = 0;
  for (size_t i = 0; i < n; ++i)
    if (std::abs(grad[i]) > scale) scale = std::abs(grad[i]), argmax = i;
  const bool all = n <= static_cast<size_t>(samples);
  GradCheckResult r;
  for (size_t draw = 0; r.checked < std::min<int>(samples, int(n)) && draw < 4 * n; ++draw) {
    const size_t i = all ? draw : (draw == 0 ? argmax : rng.below(n));
    if (all && draw >= n) break;
    const double coarse = numeric_grad(x + i, loss, h), fine = numeric_grad(x + i, loss, h / 2);
    if (grad_error(coarse, fine, 1e-3 * scale) > tol) {
      ++r.skipped;
      continue;
    }
    ++r.checked;
    const double err = grad_error(grad[i], fine, 1e-3 * scale);
    if (err >= r.max_error) {
      r.max_error = err;
      r.worst_index = i;
      r.worst_analytic = grad[i];
      r.worst_numeric = fine;
    }
  }
  return r;
}

}  // namespace muongpt::testing
