// Dualizers: for a norm ‖·‖ on matrices, dualize(X) = argmax_{‖T‖ = 1} ⟨X, T⟩ is the direction of
// steepest ascent under that norm; Muon steps along −dualize(momentum). Every dualizer here is a
// free-standing function on one row-major [m, n] float32 matrix, so tests, the CPU optimizer, and
// later the GPU and multi-rank Muon (which group same-shape matrices: dualize_batch) share it.
//
//   ns          Newton–Schulz: X ← X / (c·‖X‖_F + eps), then per step A = X Xᵀ,
//               X ← a·X + (b·A + c·A²)·X (rows ≤ cols; for a tall X the same transposed:
//               A = XᵀX, X ← a·X + X·(b·A + c·A²)). float32 throughout, like the reference.
//               Coefficients: jordan (3.4445, −4.7750, 2.0315), cubic (1.5, −0.5, 0), or
//               polar-express (a different triple per step; norm factor 1.01).
//   polar       U Vᵀ from X = U Σ Vᵀ (steepest descent under the spectral norm; SpecGD).
//   schatten-p  U · diag(σᵢ^(q−1)) / ‖X‖_{S_q}^(q−1) · Vᵀ with 1/p + 1/q = 1, p ∈ [1, ∞]: p = 2 is
//               X/‖X‖_F, p = ∞ is U Vᵀ, p = 1 is the top singular pair(s) (u₁v₁ᵀ).
//   sign        sign(X) elementwise (the max-of-max norm ‖·‖_{1→∞}); sign(0) = 0.
//   frobenius   X / ‖X‖_F.
//
// The exact ones (polar, schatten-p) take the eigendecomposition of the smaller Gram matrix in
// double (LAPACK dsyevd): with k = min(m, n) and G = X Xᵀ = U Σ² Uᵀ (m ≤ n; else XᵀX), any
// spectral map σ ↦ h(σ) is T = U diag(h(σ)/σ) Uᵀ X, one k×k eigenproblem and two GEMMs.
// Directions whose eigenvalue is below k·1e-14·λ_max (σ below ~1e-7·√k·σ_max, under the float32
// input's own rounding) count as null space and map to 0; a zero matrix maps to zero for every
// dualizer. The scalar formulas are in optim/dualizer_math.h, shared with the GPU dualizers
// (optim/dualizer_cuda.h).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace muongpt {

enum class DualizerKind { newton_schulz, polar, schatten_p, sign, frobenius };
enum class NsCoeffs { jordan, cubic, polar_express };

struct NsStep {
  double a, b, c;
};

struct DualizerSpec {
  DualizerKind kind = DualizerKind::newton_schulz;
  NsCoeffs coeffs = NsCoeffs::jordan;                  // newton_schulz only
  int ns_steps = 5;                                    // newton_schulz only
  double ns_eps = 1e-7;                                // newton_schulz only
  double p = std::numeric_limits<double>::infinity();  // schatten_p only

  // Canonical spelling, parsed back by parse_dualizer: "ns:jordan:5", "polar", "schatten-p:4",
  // "schatten-p:inf", "sign", "frobenius".
  std::string name() const;
  bool exact() const { return kind == DualizerKind::polar || kind == DualizerKind::schatten_p; }
  bool operator==(const DualizerSpec&) const = default;
};

// Parses a dualizer name:
//   ns                       coefficients and steps from `ns_default`
//   ns5                      ns:jordan:5
//   ns:<coeffs>[:<steps>]    coeffs jordan | cubic | polar-express; steps 1..100
//   polar | sign | frobenius
//   schatten-p:<p>           p a number ≥ 1, or inf
// `ns_default` also supplies ns_eps. Errors: Error(file, context + ": ..."), e.g.
// "x.toml: [optim] rules[2]: unknown dualizer 'nss' (expected ...)".
DualizerSpec parse_dualizer(std::string_view text, const DualizerSpec& ns_default,
                            const std::string& file, const std::string& context);
NsCoeffs parse_ns_coeffs(std::string_view text, const std::string& file,
                         const std::string& context);
std::string_view ns_coeffs_name(NsCoeffs c);

// The (a, b, c) of Newton–Schulz step `i` (0-based), and the factor on ‖X‖_F in the
// normalisation (1 for jordan and cubic, 1.01 for polar-express).
NsStep ns_step_coeffs(NsCoeffs c, int i);
double ns_norm_factor(NsCoeffs c);

// Scratch memory, grown on demand and reused, so that repeated calls do not allocate.
struct DualizerWorkspace {
  std::vector<float> f0, f1, f2, f3;               // Newton–Schulz: Y, Y', A, B
  std::vector<double> d0, d1, d2, d3, d4, d5, d6;  // exact: X, U, λ, U·D, W, σ, T
};

// out[m, n] = dualize(X[m, n]). out may alias X. `ws` may be null (then it allocates).
void dualize(const DualizerSpec& spec, const float* X, float* out, int64_t m, int64_t n,
             DualizerWorkspace* ws = nullptr);
void dualize(const DualizerSpec& spec, const float* X, float* out, int64_t m, int64_t n,
             DualizerWorkspace& ws);

// The same for a list of same-shape matrices: out[i] = dualize(X[i]). This is the unit a GPU
// (batched GEMMs) and a multi-rank Muon (one owner per matrix, grouped by shape) work in; on the
// CPU it loops.
void dualize_batch(const DualizerSpec& spec, const std::vector<const float*>& X,
                   const std::vector<float*>& out, int64_t m, int64_t n,
                   DualizerWorkspace* ws = nullptr);

// Singular values of X[m, n] in descending order (min(m, n) of them), from the eigenvalues of the
// smaller Gram matrix in double. Accurate to about 1e-8·σ_max; for tests and telemetry.
std::vector<double> singular_values(const float* X, int64_t m, int64_t n);

}  // namespace muongpt
