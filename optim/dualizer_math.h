// Scalar math of the dualizers, shared by the CPU dualizer (optim/dualizer.cpp) and the CUDA one
// (optim/dualizer_cuda.cu): the Newton–Schulz normalisation, sign and Frobenius per element, and
// the spectral coefficients of the exact dualizers. Each function is the one definition of its
// formula; both sides call it with the same operands, so they round the same way (the GPU files
// are compiled with -fmad=false so that no multiply-add is contracted).
//
// Exact dualizers (see optim/dualizer.h): with the eigenvalues λ of the smaller Gram matrix
// (ascending, as LAPACK and cuSOLVER return them) and k = min(m, n),
//   λ_max = max(λ_k, 0),  cutoff = k·kExactNullRel·λ_max,  σᵢ = λᵢ > cutoff ? √λᵢ : 0,
//   s_max = √λ_max, and T = U diag(coefᵢ) Uᵀ X with coefᵢ = h(σᵢ)/σᵢ (0 for σᵢ = 0):
//     p = ∞ (polar):  coefᵢ = 1/σᵢ
//     p = 1:          coefᵢ = 1/(top·σᵢ) for the `top` singular values within kExactTopRel of
//                     s_max, 0 for the others
//     else, q = p/(p−1): S = Σ (σⱼ/s_max)^q,  coefᵢ = (σᵢ/s_max)^(q−1) / S^((q−1)/q) / σᵢ.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/hd.h"

namespace muongpt {

// Gram eigenvalues below kExactNullRel·k·λ_max count as zero singular values.
constexpr double kExactNullRel = 1e-14;
// p = 1: singular values within this relative distance of the largest share the unit norm.
constexpr double kExactTopRel = 1e-12;

// Newton–Schulz: X ← X / denom with denom = c·‖X‖_F + eps, in float (‖X‖_F from a double sum).
MG_HD float ns_denominator(double frobenius_norm, float norm_factor, float eps) {
  return float(frobenius_norm) * norm_factor + eps;
}

// sign(x) with sign(0) = 0 (and sign(NaN) = 0).
MG_HD float sign_element(float x) {
  return float((x > 0) - (x < 0));
}

// x / ‖X‖_F, rounded once from double; a zero matrix maps to zero.
MG_HD float frobenius_element(float x, double norm) {
  return norm > 0 ? float(double(x) / norm) : 0.0f;
}

// λ_max from the largest eigenvalue (std::max(top, 0.0) spelled out, so a NaN passes through).
MG_HD double exact_lam_max(double top) {
  return top < 0.0 ? 0.0 : top;
}

MG_HD double exact_cutoff(double lam_max, int64_t k) {
  return lam_max * double(k) * kExactNullRel;
}

MG_HD double exact_sigma(double lam, double cutoff) {
  return lam > cutoff ? std::sqrt(lam) : 0.0;
}

// p = ∞.
MG_HD double exact_coef_polar(double sig) {
  return sig > 0 ? 1.0 / sig : 0.0;
}

// p = 1.
MG_HD bool exact_is_top(double sig, double s_max) {
  return sig >= s_max * (1 - kExactTopRel);
}
MG_HD double exact_coef_nuclear(double sig, double s_max, int64_t top) {
  return exact_is_top(sig, s_max) ? 1.0 / (double(top) * sig) : 0.0;
}

// 1 < p < ∞: the term of S, the norm S^((q−1)/q) and the coefficient.
MG_HD double schatten_term(double sig, double s_max, double q) {
  return sig > 0 ? std::pow(sig / s_max, q) : 0.0;
}
MG_HD double schatten_norm(double S, double q) {
  return std::pow(S, (q - 1) / q);
}
MG_HD double exact_coef_schatten(double sig, double s_max, double q, double norm) {
  return sig > 0 ? std::pow(sig / s_max, q - 1) / norm / sig : 0.0;
}

}  // namespace muongpt
