// The linear algebra of rank telemetry (train/telemetry.h), run where the model's tensors live:
// on the host for the CPU model, on the GPU for the CUDA one (train/spectra_cuda.cu), so that a
// telemetry step never copies activations, gradients or updates off the device.
//
// Numerics, the same on both: an activation's Gram AᵀA is a float32 GEMM per micro-batch,
// accumulated in float64; a matrix's spectrum comes from the float64 eigenvalues of its smaller
// float32 Gram (GᵀG or GGᵀ); squared Frobenius norms are float64 sums of the float32 entries.
// Anything non-finite gives NaN (null in ranks.jsonl) and is never handed to the eigensolver.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "core/hd.h"
#include "core/tensor.h"

namespace muongpt {

class Comm;

// Squared Frobenius norm, squared spectral norm and nuclear norm of a matrix. The ranks of a
// zero matrix are undefined: NaN (null in ranks.jsonl).
struct MatrixRanks {
  double fro2 = 0, spec2 = 0, nuclear = 0;
  double stable_rank() const { return spec2 > 0 ? fro2 / spec2 : NAN; }  // ‖G‖_F² / ‖G‖₂²
  double nuclear_rank() const {
    return fro2 > 0 ? nuclear * nuclear / fro2 : NAN;
  }  // ‖G‖_*² / ‖G‖_F²
};

// A row-major float32 matrix [rows, cols] in the backend's memory.
struct MatrixRef {
  const float* data = nullptr;
  int64_t rows = 0, cols = 0;
};

// Host reference versions (the CPU backend uses them; tests compare the GPU against them).
// Spectrum of G [m, n] through the eigenvalues of its smaller Gram matrix. Without `nuclear`
// only ‖G‖_F² and ‖G‖₂² are computed, the latter by Lanczos (nuclear is NaN).
MatrixRanks matrix_ranks(const float* G, int64_t m, int64_t n, bool nuclear = true);
// Stable rank trace(C) / λ_max(C) of a symmetric positive semi-definite Gram matrix C [n, n],
// λ_max from a full LAPACK eigensolve (the reference the Lanczos backends are tested against).
double gram_stable_rank(const std::vector<double>& C, int64_t n);

// λ_max of a Gram by Lanczos, on both backends (docs/telemetry.md, "On the GPU"): full
// reorthogonalisation (classical Gram–Schmidt twice) from a fixed start vector, at most
// lanczos_steps(n) steps, a convergence check after 8, 16, 32, ... steps and the last (each
// check is a dense eigensolve of the projection: doubling keeps their total near one of the
// last size).
constexpr int64_t kLanczosMax = 160;
constexpr double kLanczosTol = 1e-9;
inline int64_t lanczos_steps(int64_t n) {
  return n < kLanczosMax ? n : kLanczosMax;
}
inline bool lanczos_check_due(int64_t steps_done, int64_t max_steps) {
  return steps_done == max_steps || (steps_done >= 8 && (steps_done & (steps_done - 1)) == 0);
}
// Entry r of the (unnormalised) start vector: a fixed pseudo-random value in [−0.5, 0.5).
MG_HD double lanczos_start(int64_t r) {
  uint64_t x = uint64_t(r) * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ull;
  x ^= x >> 29;
  return double(x >> 11) * 0x1.0p-53 - 0.5;
}
// A step breaks down when what is left of C·v_j after the reorthogonalisation, β, is below
// 1e-10 of the largest projection |v_rᵀ C v_j|: the Krylov space is (numerically) invariant, and
// normalising the remainder, mostly rounding noise, would bring back directions already found.
// β is then taken as 0 and the basis ends there (lanczos_check sees the breakdown).
MG_HD bool lanczos_breakdown(double beta, double largest_projection) {
  return beta <= 1e-10 * largest_projection;
}
// One convergence check. H holds the projection's first m columns, column r as row r of H (row
// stride K + 1): v_0..v_r · C v_r, then β_r = ‖w‖ after step r. With full reorthogonalisation
// the projection is tridiagonal to rounding (α_r = H[r][r], β_r), so its top eigenvalue θ is
// an O(m²) solve. θ grows towards λ_max from below; *done when it moved by at most
// kLanczosTol·θ since the previous check (`previous`, 0 at the first; the checks double the
// steps, and Lanczos converges faster than geometrically, so the error left is far smaller than
// that move), after a breakdown (some β_r = 0: an invariant subspace, θ exact) or at m = n.
double lanczos_check(const double* H, int64_t m, int64_t K, int64_t n, double previous, bool* done);
// λ_max of a symmetric positive semi-definite C [n, n] (host memory).
double lanczos_lambda_max(const double* C, int64_t n);

class Spectra {
 public:
  virtual ~Spectra() = default;

  // Gram accumulators, one per entry of the `gram_widths` the backend was made with.
  virtual void zero_grams() = 0;
  // Gram k += AᵀA for an activation A [rows, width] (float32, or bf16 on the GPU).
  virtual void add_gram(size_t k, const Tensor& activation) = 0;
  // Sums every Gram over the ranks (collective).
  virtual void sum_grams(Comm& comm) = 0;
  // trace / λ_max of the Grams `ks` (NaN for a zero or non-finite one), λ_max by Lanczos.
  virtual std::vector<double> gram_stable_ranks(const std::vector<size_t>& ks) = 0;

  // Spectra of matrices in the backend's memory (matrix_ranks: with `nuclear`, every eigenvalue
  // of each Gram; without, λ_max by Lanczos and nuclear = NaN).
  virtual std::vector<MatrixRanks> ranks(const std::vector<MatrixRef>& matrices, bool nuclear) = 0;
  // Bytes held in the backend's memory (Gram accumulators, batch buffers, workspaces).
  virtual size_t memory_bytes() const = 0;

  // ‖a_i − b_i‖² per pair (same shapes), in float64.
  virtual std::vector<double> distances2(const std::vector<MatrixRef>& a,
                                         const std::vector<MatrixRef>& b) = 0;
};

// Host memory. `gram_widths`: the width of each activation Gram.
std::unique_ptr<Spectra> make_cpu_spectra(const std::vector<int64_t>& gram_widths);

}  // namespace muongpt
