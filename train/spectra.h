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
// Spectrum of G [m, n] through the eigenvalues of its smaller Gram matrix.
MatrixRanks matrix_ranks(const float* G, int64_t m, int64_t n);
// Stable rank trace(C) / λ_max(C) of a symmetric positive semi-definite Gram matrix C [n, n].
double gram_stable_rank(const std::vector<double>& C, int64_t n);

class Spectra {
 public:
  virtual ~Spectra() = default;

  // Gram accumulators, one per entry of the `gram_widths` the backend was made with.
  virtual void zero_grams() = 0;
  // Gram k += AᵀA for an activation A [rows, width] (float32, or bf16 on the GPU).
  virtual void add_gram(size_t k, const Tensor& activation) = 0;
  // Sums every Gram over the ranks (collective).
  virtual void sum_grams(Comm& comm) = 0;
  // trace / λ_max of the Grams `ks` (NaN for a zero or non-finite one). May destroy them: call
  // zero_grams() before accumulating again.
  virtual std::vector<double> gram_stable_ranks(const std::vector<size_t>& ks) = 0;

  // Spectra of matrices in the backend's memory.
  virtual std::vector<MatrixRanks> ranks(const std::vector<MatrixRef>& matrices) = 0;
  // ‖a_i − b_i‖² per pair (same shapes), in float64.
  virtual std::vector<double> distances2(const std::vector<MatrixRef>& a,
                                         const std::vector<MatrixRef>& b) = 0;
};

// Host memory. `gram_widths`: the width of each activation Gram.
std::unique_ptr<Spectra> make_cpu_spectra(const std::vector<int64_t>& gram_widths);

}  // namespace muongpt
