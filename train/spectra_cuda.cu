#include "train/spectra_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <string>

#include "core/arena.h"
#include "core/comm.h"
#include "core/cublas_check.h"
#include "core/cuda_check.h"
#include "core/error.h"
#include "core/gemm_cuda.h"

namespace muongpt {

namespace {

constexpr int kThreads = 256;
constexpr int kPartials = 64;  // blocks per squared-norm reduction: fixed, so the sum is too
// Largest float64 batch handed to the eigensolver at once; bigger sets run in chunks.
constexpr size_t kBatchBytes = size_t(256) << 20;

unsigned blocks_for(int64_t n) {
  return unsigned(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 65535));
}

__global__ void add_to_f64_kernel(double* sum, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    sum[i] += double(x[i]);
}

// Matrix blockIdx.y of a batch: float32 → float64, flagging a non-finite entry.
__global__ void to_f64_flag_kernel(double* dst, const float* src, int64_t per, int* bad) {
  const int64_t base = blockIdx.y * per;
  bool finite = true;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < per;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float v = src[base + i];
    finite &= isfinite(v);
    dst[base + i] = double(v);
  }
  if (!finite) atomicOr(&bad[blockIdx.y], 1);
}

// Zeroes the flagged matrices of a batch so that the eigensolver only ever sees finite input.
__global__ void zero_flagged_kernel(double* A, int64_t per, const int* bad) {
  if (!bad[blockIdx.y]) return;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < per;
       i += int64_t(gridDim.x) * blockDim.x)
    A[blockIdx.y * per + i] = 0.0;
}

// Σ (or max) of v over the block, returned to every thread; safe to call repeatedly.
template <bool kMax = false>
__device__ double block_reduce(double v) {
  __shared__ double s[kThreads];
  __syncthreads();  // a previous call's threads may still be reading s[0]
  s[threadIdx.x] = v;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h /= 2) {
    if (int(threadIdx.x) < h)
      s[threadIdx.x] =
          kMax ? fmax(s[threadIdx.x], s[threadIdx.x + h]) : s[threadIdx.x] + s[threadIdx.x + h];
    __syncthreads();
  }
  return s[0];
}

__device__ double block_sum(double v) {
  return block_reduce<false>(v);
}

// partial[blockIdx.x] = Σ (a − b)² over a fixed strided share of the elements (b may be null).
__global__ void diff_squares_partial_kernel(const float* a, const float* b, int64_t n,
                                            double* partial) {
  double acc = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const double d = double(a[i]) - (b ? double(b[i]) : 0.0);
    acc += d * d;
  }
  const double total = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

__global__ void sum_partials_kernel(const double* partial, double* out) {
  double s = 0;
  for (int i = 0; i < kPartials; ++i) s += partial[i];
  *out = s;
}

// Gram blockIdx.x of `mats` [w, w]: its trace, and a flag when any entry is not finite.
__global__ void trace_flag_kernel(const double* const* mats, int64_t w, double* trace, int* bad) {
  const double* g = mats[blockIdx.x];
  bool finite = true;
  for (int64_t i = threadIdx.x; i < w * w; i += blockDim.x) finite &= isfinite(g[i]);
  double acc = 0;
  for (int64_t i = threadIdx.x; i < w; i += blockDim.x) acc += g[i * w + i];
  const double total = block_sum(acc);
  if (!finite) atomicOr(&bad[blockIdx.x], 1);
  if (threadIdx.x == 0) trace[blockIdx.x] = total;
}

// Lanczos, one block per matrix i of the batch: basis V_i [K + 1, n] (row r = v_r), projections
// H_i [K, K + 1] (row j = column j of the Hessenberg matrix: v_0..v_j · C v_j, then β_j), work
// vector w_i [n]. Ends iteration j (j = −1: the start): adds the second reorthogonalisation's
// coefficients h2_i [K + 1] to H_i's row j, then β = ‖w_i‖ (0 after a breakdown,
// lanczos_breakdown) becomes H_i[j][j + 1] and v_{j+1} = w_i / β (zero after a breakdown).
__global__ void lanczos_normalize_kernel(double* V, double* H, double* W, const double* h2,
                                         int64_t n, int64_t K, int64_t j) {
  const int64_t i = blockIdx.x;
  double* w = W + i * n;
  double* h = j >= 0 ? H + i * K * (K + 1) + j * (K + 1) : nullptr;
  double largest = 0;
  if (h)
    for (int64_t r = threadIdx.x; r <= j; r += blockDim.x) {
      h[r] += h2[i * (K + 1) + r];
      largest = fmax(largest, fabs(h[r]));
    }
  largest = block_reduce<true>(largest);
  double acc = 0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) acc += w[r] * w[r];
  double beta = sqrt(block_sum(acc));
  if (lanczos_breakdown(beta, largest)) beta = 0;
  if (h && threadIdx.x == 0) h[j + 1] = beta;
  double* v = V + i * (K + 1) * n + (j + 1) * n;
  const double inv = beta > 0 ? 1.0 / beta : 0.0;
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) v[r] = w[r] * inv;
}

// The start vector (lanczos_start, shared with the host) in every w_i.
__global__ void lanczos_start_kernel(double* W, int64_t n) {
  for (int64_t r = threadIdx.x; r < n; r += blockDim.x) W[blockIdx.x * n + r] = lanczos_start(r);
}

enum class EigMode { batched, loop };

EigMode eig_mode_from_env() {
  const char* v = std::getenv("MUONGPT_TELEMETRY_EIG");
  if (!v || !*v || std::string(v) == "batched") return EigMode::batched;
  if (std::string(v) == "loop") return EigMode::loop;
  fail("MUONGPT_TELEMETRY_EIG", "must be 'batched' or 'loop', not '", v, "'");
}

class CudaSpectra final : public Spectra {
 public:
  CudaSpectra(const std::vector<int64_t>& widths,
              const std::vector<std::pair<int64_t, int64_t>>& matrices, CudaStream stream)
      : stream_(stream), mode_(eig_mode_from_env()) {
    // How many matrices of each Gram size one batch holds.
    std::map<int64_t, int64_t> how_many;  // Gram size → matrices of that size
    for (auto [rows, cols] : matrices) ++how_many[std::min(rows, cols)];
    std::map<int64_t, int64_t> of_width;  // activation Grams per width: one Lanczos batch each
    for (int64_t w : widths) ++of_width[w];
    int64_t basis = 0, work = 0, proj = 0, grams = 0, widest = 0;
    for (auto [w, count] : of_width) {
      widest = std::max(widest, w);
      const int64_t K = lanczos_steps(w);
      basis = std::max(basis, count * (K + 1) * w);
      work = std::max(work, count * w);
      proj = std::max(proj, count * K * (K + 1));
      grams = std::max(grams, count);
    }
    int64_t batch_elems = 0, eig_elems = 0, most = grams;
    for (auto [s, count] : how_many) {
      const int64_t fit = std::max<int64_t>(1, int64_t(kBatchBytes / (size_t(s * s) * 8)));
      batch_[s] = std::min(count, fit);
      const int64_t K = lanczos_steps(s), c = batch_[s];  // the updates' λ_max, per batch
      basis = std::max(basis, c * (K + 1) * s);
      work = std::max(work, c * s);
      proj = std::max(proj, c * K * (K + 1));
      grams = std::max(grams, c);
      batch_elems = std::max(batch_elems, batch_[s] * s * s);
      eig_elems = std::max(eig_elems, batch_[s] * s);
      most = std::max(most, count);
    }
    most_ = std::max<int64_t>(most, int64_t(matrices.size()));
    arena_ = plan_arena(Device::cuda, [&](Arena& a) {
      grams_.clear();
      for (int64_t w : widths)
        grams_.push_back({w, static_cast<double*>(a.alloc_bytes(size_t(w * w) * 8))});
      a64_ = static_cast<double*>(a.alloc_bytes(size_t(batch_elems) * 8));
      // The float32 Grams of a batch, or of one micro-batch's activation (add_gram).
      f32_ = static_cast<float*>(a.alloc_bytes(size_t(std::max(batch_elems, widest * widest)) * 4));
      eig_ = static_cast<double*>(a.alloc_bytes(size_t(eig_elems) * 8));
      partials_ = static_cast<double*>(a.alloc_bytes(size_t(kPartials * most_) * 8));
      sums_ = static_cast<double*>(a.alloc_bytes(size_t(most_) * 8));
      flags_ = static_cast<int*>(a.alloc_bytes(size_t(most_) * 2 * sizeof(int)));
      lz_.V = static_cast<double*>(a.alloc_bytes(size_t(basis) * 8));
      lz_.W = static_cast<double*>(a.alloc_bytes(size_t(work) * 8));
      lz_.H = static_cast<double*>(a.alloc_bytes(size_t(proj) * 8));
      lz_.h2 = static_cast<double*>(a.alloc_bytes(size_t(proj) * 8));
      lz_.ptrs = static_cast<const double**>(a.alloc_bytes(size_t(3 * grams) * sizeof(void*)));
    });
    cublasHandle_t blas = nullptr;
    MG_CUBLAS(cublasCreate(&blas));
    blas_ = blas;
    MG_CUBLAS(cublasSetStream(blas_, as_cuda(stream_)));
    MG_CUBLAS(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));  // plain IEEE float64
    cusolverDnHandle_t solver = nullptr;
    MG_CUSOLVER(cusolverDnCreate(&solver));
    solver_ = solver;
    MG_CUSOLVER(cusolverDnSetStream(solver_, as_cuda(stream_)));
    MG_CUSOLVER(cusolverDnCreateParams(&params_));
    size_t dev_bytes = 0, host_bytes = 0;
    for (auto [s, per] : batch_)
      for (int64_t count = (mode_ == EigMode::batched ? 1 : per); count <= per; ++count) {
        size_t d = 0, h = 0;
        if (mode_ == EigMode::batched)
          MG_CUSOLVER(cusolverDnXsyevBatched_bufferSize(
              solver_, params_, CUSOLVER_EIG_MODE_NOVECTOR, CUBLAS_FILL_MODE_LOWER, s, CUDA_R_64F,
              a64_, s, CUDA_R_64F, eig_, CUDA_R_64F, &d, &h, count));
        else
          MG_CUSOLVER(cusolverDnXsyevd_bufferSize(solver_, params_, CUSOLVER_EIG_MODE_NOVECTOR,
                                                  CUBLAS_FILL_MODE_LOWER, s, CUDA_R_64F, a64_, s,
                                                  CUDA_R_64F, eig_, CUDA_R_64F, &d, &h));
        dev_bytes = std::max(dev_bytes, d);
        host_bytes = std::max(host_bytes, h);
      }
    workspace_.emplace(Device::cuda, std::max<size_t>(dev_bytes, 1));
    workspace_bytes_ = dev_bytes;
    work_ = workspace_->alloc_bytes(std::max<size_t>(dev_bytes, 1));
    host_work_.resize(std::max<size_t>(host_bytes, 1));
    MG_CUDA(cudaDeviceSynchronize());  // the arenas' zero fills ran on the legacy stream
  }

  ~CudaSpectra() override {
    if (params_) cusolverDnDestroyParams(params_);
    if (solver_) cusolverDnDestroy(solver_);
    if (blas_) cublasDestroy(blas_);
  }

  void zero_grams() override {
    for (const Gram& g : grams_)
      MG_CUDA(cudaMemsetAsync(g.sum, 0, size_t(g.width * g.width) * 8, as_cuda(stream_)));
  }

  void add_gram(size_t k, const Tensor& x) override {
    const Gram& g = grams_.at(k);
    MG_CHECK(x.device() == Device::cuda && x.ndim() == 2 && x.size(1) == g.width &&
                 (x.dtype() == DType::f32 || x.dtype() == DType::bf16),
             "activation for Gram ", k, " must be a device f32/bf16 [rows, ", g.width, "]");
    const int64_t w = g.width, n = w * w;
    gemm_cuda(stream_, true, false, w, w, x.size(0), 1.0f, x.raw(), w, x.raw(), w, 0.0f, f32_, w,
              x.dtype(), DType::f32);  // AᵀA
    add_to_f64_kernel<<<blocks_for(n), kThreads, 0, as_cuda(stream_)>>>(g.sum, f32_, n);
    MG_CUDA(cudaGetLastError());
  }

  void sum_grams(Comm& comm) override {
    if (comm.world() == 1) return;
    if (comm.buffers() != Device::cuda)
      fail("telemetry", "the GPU's Grams need a device-memory communicator (NCCL), got ",
           comm.backend());
    comm.set_stream(stream_);  // after the Grams' GEMMs
    for (const Gram& g : grams_) comm.all_reduce_sum(g.sum, g.width * g.width, DType::f64);
  }

  // trace / λ_max, λ_max by Lanczos (lanczos_batched): the Grams are read, not copied.
  std::vector<double> gram_stable_ranks(const std::vector<size_t>& ks) override {
    std::vector<double> out(ks.size(), NAN);
    for (const auto& [w, members] : by_size(ks, [&](size_t j) { return grams_.at(ks[j]).width; })) {
      const int64_t count = int64_t(members.size());
      std::vector<const double*> mats;
      for (size_t m : members) mats.push_back(grams_[ks[m]].sum);
      MG_CUDA(cudaMemcpyAsync(lz_.ptrs, mats.data(), mats.size() * sizeof(void*),
                              cudaMemcpyHostToDevice, as_cuda(stream_)));
      MG_CUDA(cudaMemsetAsync(flags_, 0, size_t(count) * sizeof(int), as_cuda(stream_)));
      trace_flag_kernel<<<unsigned(count), kThreads, 0, as_cuda(stream_)>>>(lz_.ptrs, w, sums_,
                                                                            flags_);
      MG_CUDA(cudaGetLastError());
      std::vector<double> traces(static_cast<size_t>(count));
      std::vector<int> bad(static_cast<size_t>(count));
      MG_CUDA(cudaMemcpyAsync(traces.data(), sums_, traces.size() * 8, cudaMemcpyDeviceToHost,
                              as_cuda(stream_)));
      MG_CUDA(cudaMemcpyAsync(bad.data(), flags_, bad.size() * sizeof(int), cudaMemcpyDeviceToHost,
                              as_cuda(stream_)));
      MG_CUDA(cudaStreamSynchronize(as_cuda(stream_)));
      std::vector<bool> wanted(static_cast<size_t>(count));
      for (int64_t c = 0; c < count; ++c)
        wanted[size_t(c)] = !bad[size_t(c)] && traces[size_t(c)] > 0;
      const std::vector<double> top = lanczos_batched(mats, w, wanted);
      for (int64_t c = 0; c < count; ++c)
        if (wanted[size_t(c)] && top[size_t(c)] > 0)
          out[members[size_t(c)]] = traces[size_t(c)] / top[size_t(c)];
    }
    return out;
  }

  std::vector<MatrixRanks> ranks(const std::vector<MatrixRef>& ms, bool nuclear) override {
    std::vector<MatrixRanks> out(ms.size());
    std::vector<MatrixRef> none(ms.size());
    const std::vector<double> fro2 = distances2(ms, none);
    std::vector<size_t> todo;  // the matrices with a spectrum to compute
    for (size_t j = 0; j < ms.size(); ++j) {
      out[j].fro2 = fro2[j];
      if (!std::isfinite(fro2[j]))
        out[j] = {NAN, NAN, NAN};
      else if (fro2[j] > 0)
        todo.push_back(j);
    }
    auto size_of = [&](size_t t) { return std::min(ms[todo[t]].rows, ms[todo[t]].cols); };
    for (const auto& [s, members] : by_size(todo, size_of))
      for (size_t at = 0; at < members.size(); at += size_t(batch_.at(s))) {
        const size_t count = std::min(members.size() - at, size_t(batch_.at(s)));
        for (size_t c = 0; c < count; ++c) {
          const MatrixRef& g = ms[todo[members[at + c]]];
          float* C = f32_ + c * size_t(s * s);
          if (g.cols <= g.rows)  // GᵀG [n, n]
            gemm_cuda(stream_, true, false, g.cols, g.cols, g.rows, 1.0f, g.data, g.cols, g.data,
                      g.cols, 0.0f, C, g.cols, DType::f32, DType::f32);
          else  // GGᵀ [m, m]
            gemm_cuda(stream_, false, true, g.rows, g.rows, g.cols, 1.0f, g.data, g.cols, g.data,
                      g.cols, 0.0f, C, g.rows, DType::f32, DType::f32);
        }
        MG_CUDA(cudaMemsetAsync(flags_, 0, count * sizeof(int), as_cuda(stream_)));
        const dim3 grid(std::min(blocks_for(s * s), 1024u), unsigned(count));
        to_f64_flag_kernel<<<grid, kThreads, 0, as_cuda(stream_)>>>(a64_, f32_, s * s, flags_);
        MG_CUDA(cudaGetLastError());
        if (!nuclear) {  // λ_max only, by Lanczos on the batch's float64 Grams
          std::vector<int> bad(count);
          MG_CUDA(cudaMemcpyAsync(bad.data(), flags_, count * sizeof(int), cudaMemcpyDeviceToHost,
                                  as_cuda(stream_)));
          MG_CUDA(cudaStreamSynchronize(as_cuda(stream_)));
          std::vector<const double*> mats;
          std::vector<bool> wanted;
          for (size_t c = 0; c < count; ++c) {
            mats.push_back(a64_ + c * size_t(s * s));
            wanted.push_back(!bad[c]);
          }
          const std::vector<double> top = lanczos_batched(mats, s, wanted);
          for (size_t c = 0; c < count; ++c) {
            MatrixRanks& r = out[todo[members[at + c]]];
            r.spec2 = bad[c] ? NAN : std::max(top[c], 0.0);  // bad: the float32 Gram overflowed
            r.nuclear = NAN;
          }
          continue;
        }
        const Eigen e = eigenvalues(s, int64_t(count));
        for (size_t c = 0; c < count; ++c) {
          MatrixRanks& r = out[todo[members[at + c]]];
          if (e.bad[c]) {  // the float32 Gram overflowed
            r.spec2 = r.nuclear = NAN;
            continue;
          }
          const double* v = e.values.data() + c * size_t(s);
          for (int64_t i = 0; i < s; ++i) r.nuclear += std::sqrt(std::max(v[i], 0.0));
          r.spec2 = std::max(v[s - 1], 0.0);
        }
      }
    return out;
  }

  size_t memory_bytes() const override {
    return arena_.capacity() + (workspace_ ? workspace_->capacity() : 0);
  }

  std::vector<double> distances2(const std::vector<MatrixRef>& a,
                                 const std::vector<MatrixRef>& b) override {
    MG_CHECK(a.size() == b.size(), "distances2: ", a.size(), " vs ", b.size(), " matrices");
    MG_CHECK(int64_t(a.size()) <= most_, "distances2: ", a.size(), " matrices, planned for ",
             most_);
    std::vector<double> out(a.size());
    if (a.empty()) return out;
    for (size_t j = 0; j < a.size(); ++j) {
      diff_squares_partial_kernel<<<kPartials, kThreads, 0, as_cuda(stream_)>>>(
          a[j].data, b[j].data, a[j].rows * a[j].cols, partials_ + j * kPartials);
      MG_CUDA(cudaGetLastError());
      sum_partials_kernel<<<1, 1, 0, as_cuda(stream_)>>>(partials_ + j * kPartials, sums_ + j);
      MG_CUDA(cudaGetLastError());
    }
    MG_CUDA(cudaMemcpyAsync(out.data(), sums_, out.size() * 8, cudaMemcpyDeviceToHost,
                            as_cuda(stream_)));
    MG_CUDA(cudaStreamSynchronize(as_cuda(stream_)));
    return out;
  }

 private:
  struct Gram {
    int64_t width;
    double* sum;  // [width, width], device
  };
  struct Eigen {
    std::vector<double> values;  // [count, n] ascending
    std::vector<int> bad;        // [count]
  };

  // Positions 0..n−1 grouped by size(position), ascending sizes, order kept within a size.
  template <class SizeOf>
  static std::map<int64_t, std::vector<size_t>> by_size(const std::vector<size_t>& items,
                                                        SizeOf size_of) {
    std::map<int64_t, std::vector<size_t>> groups;
    for (size_t j = 0; j < items.size(); ++j) groups[size_of(j)].push_back(j);
    return groups;
  }

  // λ_max of symmetric positive semi-definite [n, n] float64 matrices (device), all advanced
  // together by the Lanczos of spectra.h (the host's lanczos_lambda_max, batched): the steps on
  // the device, lanczos_check on the host when lanczos_check_due. Matrices not `wanted`
  // (zero or non-finite) are skipped (NaN).
  std::vector<double> lanczos_batched(const std::vector<const double*>& mats, int64_t n,
                                      const std::vector<bool>& wanted) {
    const int64_t count = int64_t(mats.size()), K = lanczos_steps(n);
    std::vector<double> theta(size_t(count), NAN);
    std::vector<bool> done(static_cast<size_t>(count));
    int64_t left = 0;
    for (int64_t c = 0; c < count; ++c) {
      done[size_t(c)] = !wanted[size_t(c)];
      left += !done[size_t(c)];
    }
    if (left == 0) return theta;
    const cudaStream_t s = as_cuda(stream_);
    const double one = 1, zero = 0, minus_one = -1;
    // Pointer arrays for the batched C·v: matrices, then v_j and w of each (set per step).
    std::vector<const double*> ptrs(size_t(3 * count));
    MG_CUDA(cudaMemsetAsync(lz_.H, 0, size_t(count * K * (K + 1)) * 8, s));
    lanczos_start_kernel<<<unsigned(count), kThreads, 0, s>>>(lz_.W, n);
    MG_CUDA(cudaGetLastError());
    lanczos_normalize_kernel<<<unsigned(count), kThreads, 0, s>>>(lz_.V, lz_.H, lz_.W, lz_.h2, n, K,
                                                                  -1);
    MG_CUDA(cudaGetLastError());
    const int64_t sv = (K + 1) * n, sh = K * (K + 1);  // per-matrix strides of V and H
    std::vector<double> H(size_t(count * sh));
    for (int64_t j = 0; j < K && left > 0; ++j) {
      for (int64_t c = 0; c < count; ++c) {
        ptrs[size_t(c)] = mats[size_t(c)];
        ptrs[size_t(count + c)] = lz_.V + c * sv + j * n;
        ptrs[size_t(2 * count + c)] = lz_.W + c * n;
      }
      MG_CUDA(cudaMemcpyAsync(lz_.ptrs, ptrs.data(), ptrs.size() * sizeof(void*),
                              cudaMemcpyHostToDevice, s));
      MG_CUDA(cudaStreamSynchronize(s));  // ptrs is reused by the next step
      // w = C v_j (C symmetric: its row-major layout reads the same as column-major)
      MG_CUBLAS(cublasDgemvBatched(
          blas_, CUBLAS_OP_N, int(n), int(n), &one, lz_.ptrs, int(n), lz_.ptrs + count, 1, &zero,
          const_cast<double* const*>(lz_.ptrs + 2 * count), 1, int(count)));
      // h = V_{0..j}ᵀ w into H's row j; w −= V_{0..j} h; then once more into h2.
      for (int pass = 0; pass < 2; ++pass) {
        double* h = pass == 0 ? lz_.H + j * (K + 1) : lz_.h2;
        const int64_t sh_pass = pass == 0 ? sh : K + 1;
        MG_CUBLAS(cublasDgemvStridedBatched(blas_, CUBLAS_OP_T, int(n), int(j + 1), &one, lz_.V,
                                            int(n), sv, lz_.W, 1, n, &zero, h, 1, sh_pass,
                                            int(count)));
        MG_CUBLAS(cublasDgemvStridedBatched(blas_, CUBLAS_OP_N, int(n), int(j + 1), &minus_one,
                                            lz_.V, int(n), sv, h, 1, sh_pass, &one, lz_.W, 1, n,
                                            int(count)));
      }
      lanczos_normalize_kernel<<<unsigned(count), kThreads, 0, s>>>(lz_.V, lz_.H, lz_.W, lz_.h2, n,
                                                                    K, j);
      MG_CUDA(cudaGetLastError());
      const int64_t m = j + 1;  // size of the projected matrix
      if (!lanczos_check_due(m, K)) continue;
      MG_CUDA(cudaMemcpyAsync(H.data(), lz_.H, H.size() * 8, cudaMemcpyDeviceToHost, s));
      MG_CUDA(cudaStreamSynchronize(s));
      for (int64_t c = 0; c < count; ++c) {
        if (done[size_t(c)]) continue;
        bool converged = false;
        const double previous = std::isnan(theta[size_t(c)]) ? 0.0 : theta[size_t(c)];
        theta[size_t(c)] = lanczos_check(H.data() + c * sh, m, K, n, previous, &converged);
        if (converged) {
          done[size_t(c)] = true;
          --left;
        }
      }
    }
    return theta;
  }

  // Eigenvalues of the `count` [n, n] float64 matrices at a64_ (flags_ already set: flagged ones
  // are zeroed first). Synchronises.
  Eigen eigenvalues(int64_t n, int64_t count) {
    const dim3 grid(std::min(blocks_for(n * n), 1024u), unsigned(count));
    zero_flagged_kernel<<<grid, kThreads, 0, as_cuda(stream_)>>>(a64_, n * n, flags_);
    MG_CUDA(cudaGetLastError());
    int* info = flags_ + most_;
    if (mode_ == EigMode::batched) {
      MG_CUSOLVER(cusolverDnXsyevBatched(solver_, params_, CUSOLVER_EIG_MODE_NOVECTOR,
                                         CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, a64_, n, CUDA_R_64F,
                                         eig_, CUDA_R_64F, work_, workspace_bytes_,
                                         host_work_.data(), host_work_.size(), info, count));
    } else {
      for (int64_t c = 0; c < count; ++c)
        MG_CUSOLVER(cusolverDnXsyevd(solver_, params_, CUSOLVER_EIG_MODE_NOVECTOR,
                                     CUBLAS_FILL_MODE_LOWER, n, CUDA_R_64F, a64_ + c * n * n, n,
                                     CUDA_R_64F, eig_ + c * n, CUDA_R_64F, work_, workspace_bytes_,
                                     host_work_.data(), host_work_.size(), info + c));
    }
    Eigen e;
    e.values.resize(size_t(count * n));
    e.bad.resize(size_t(count));
    std::vector<int> infos(static_cast<size_t>(count));
    MG_CUDA(cudaMemcpyAsync(e.values.data(), eig_, e.values.size() * 8, cudaMemcpyDeviceToHost,
                            as_cuda(stream_)));
    MG_CUDA(cudaMemcpyAsync(e.bad.data(), flags_, e.bad.size() * sizeof(int),
                            cudaMemcpyDeviceToHost, as_cuda(stream_)));
    // The batched solver reports through info[0] only on a bad argument; per matrix otherwise.
    MG_CUDA(cudaMemcpyAsync(infos.data(), info, infos.size() * sizeof(int), cudaMemcpyDeviceToHost,
                            as_cuda(stream_)));
    MG_CUDA(cudaStreamSynchronize(as_cuda(stream_)));
    for (int64_t c = 0; c < count; ++c)
      if (infos[size_t(c)] != 0)
        fail("telemetry", "the cuSOLVER eigensolver failed on a ", n, "x", n, " Gram matrix (info ",
             infos[size_t(c)], ")");
    return e;
  }

  struct LanczosBuffers {
    double *V = nullptr, *W = nullptr, *H = nullptr, *h2 = nullptr;
    const double** ptrs = nullptr;  // [3 · Grams of one width]
  };

  CudaStream stream_;
  EigMode mode_;
  LanczosBuffers lz_;
  cublasHandle_t blas_ = nullptr;
  std::map<int64_t, int64_t> batch_;  // Gram size → matrices per eigensolver call
  Arena arena_ = Arena::counting(Device::cuda);
  std::vector<Gram> grams_;
  double* a64_ = nullptr;  // a batch of float64 matrices for the eigensolver
  float* f32_ = nullptr;   // the same batch as float32 GEMM outputs
  double* eig_ = nullptr;  // their eigenvalues
  double* partials_ = nullptr;
  double* sums_ = nullptr;
  int* flags_ = nullptr;  // [most_] non-finite flags, then [most_] cuSOLVER infos
  int64_t most_ = 0;
  cusolverDnHandle_t solver_ = nullptr;
  cusolverDnParams_t params_ = nullptr;
  std::optional<Arena> workspace_;
  size_t workspace_bytes_ = 0;
  void* work_ = nullptr;
  std::vector<char> host_work_;
};

}  // namespace

std::unique_ptr<Spectra> make_cuda_spectra(const std::vector<int64_t>& gram_widths,
                                           const std::vector<std::pair<int64_t, int64_t>>& matrices,
                                           CudaStream stream) {
  return std::make_unique<CudaSpectra>(gram_widths, matrices, stream);
}

}  // namespace muongpt
