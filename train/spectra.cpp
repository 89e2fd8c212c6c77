#include "train/spectra.h"

#include <algorithm>

#include "core/comm.h"
#include "core/cpu_math.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/linalg.h"
#include "core/parallel.h"

namespace muongpt {

namespace {

// The float64 sum of squares of each row of a [rows, cols] (or of a − b), rows split over the
// CPU threads.
std::vector<double> row_squares(const float* a, const float* b, int64_t rows, int64_t cols) {
  std::vector<double> out(static_cast<size_t>(rows));
  parallel_for(
      rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r)
          out[size_t(r)] = sum_squares_f64(a + r * cols, b ? b + r * cols : nullptr, cols);
      },
      std::max<int64_t>(1, 16384 / std::max<int64_t>(cols, 1)));
  return out;
}

double sum_in_order(const std::vector<double>& xs) {
  double s = 0;
  for (double x : xs) s += x;
  return s;
}

}  // namespace

MatrixRanks matrix_ranks(const float* G, int64_t m, int64_t n, bool nuclear) {
  MatrixRanks r;
  const std::vector<double> row_ss = row_squares(G, nullptr, m, n);
  r.fro2 = sum_in_order(row_ss);
  if (!std::isfinite(r.fro2)) return {NAN, NAN, NAN};  // reported as null, never fed to LAPACK
  if (r.fro2 == 0) return r;
  const int64_t s = std::min(m, n);
  std::vector<float> gf(static_cast<size_t>(s * s)), rows;
  if (n <= m) {
    // A tall gradient is often mostly zero rows (the embedding's: only the step's tokens). They
    // add nothing to GᵀG, so the Gram is formed from the others when that saves half the work.
    // (A row is zero exactly when its float64 sum of squares is: a float's square never
    // underflows in float64.)
    const int64_t kept =
        std::count_if(row_ss.begin(), row_ss.end(), [](double x) { return x != 0; });
    if (kept < m / 2) {
      rows.reserve(size_t(kept * n));
      for (int64_t i = 0; i < m; ++i)
        if (row_ss[size_t(i)] != 0) rows.insert(rows.end(), G + i * n, G + (i + 1) * n);
    }
    const float* A = rows.empty() ? G : rows.data();
    gram(rows.empty() ? m : kept, n, 1.0f, A, n, 0.0f, gf.data(), n);  // GᵀG [n, n]
  } else {
    gemm(false, true, m, m, n, 1.0f, G, n, G, n, 0.0f, gf.data(), m);  // GGᵀ [m, m]
  }
  std::vector<double> C(gf.begin(), gf.end()), w(static_cast<size_t>(s));
  for (double c : C)
    if (!std::isfinite(c)) return {r.fro2, NAN, NAN};  // float32 Gram overflowed
  if (!nuclear) {
    r.spec2 = std::max(lanczos_lambda_max(C.data(), s), 0.0);
    r.nuclear = NAN;
    return r;
  }
  sym_eigvals(s, C.data(), w.data());
  for (double e : w) r.nuclear += std::sqrt(std::max(e, 0.0));
  r.spec2 = std::max(w.back(), 0.0);
  return r;
}

namespace {
// trace(C), or NaN when any entry is not finite (reported as null, never fed to a solver).
double trace_if_finite(const std::vector<double>& C, int64_t n) {
  for (double c : C)
    if (!std::isfinite(c)) return NAN;
  double trace = 0;
  for (int64_t i = 0; i < n; ++i) trace += C[size_t(i * n + i)];
  return trace;
}
}  // namespace

double gram_stable_rank(const std::vector<double>& C, int64_t n) {
  const double trace = trace_if_finite(C, n);
  if (!(trace > 0)) return NAN;  // non-finite, or a zero activation: undefined
  std::vector<double> copy = C, w(static_cast<size_t>(n));
  sym_eigvals(n, copy.data(), w.data());
  return w.back() > 0 ? trace / w.back() : NAN;
}

double lanczos_check(const double* H, int64_t m, int64_t K, int64_t n, double previous,
                     bool* done) {
  std::vector<double> d(static_cast<size_t>(m)), e(static_cast<size_t>(m));
  bool breakdown = false;
  for (int64_t r = 0; r < m; ++r) {
    d[size_t(r)] = H[r * (K + 1) + r];
    e[size_t(r)] = H[r * (K + 1) + r + 1];  // β_r; the last is not part of the projection
    breakdown |= e[size_t(r)] == 0;
  }
  tridiag_eigvals(m, d.data(), e.data());
  const double theta = d[size_t(m - 1)];
  *done = breakdown || m == n || std::abs(theta - previous) <= kLanczosTol * std::abs(theta);
  return theta;
}

double lanczos_lambda_max(const double* C, int64_t n) {
  const int64_t K = lanczos_steps(n);
  std::vector<double> V(static_cast<size_t>((K + 1) * n)), H(static_cast<size_t>(K * (K + 1))),
      w(static_cast<size_t>(n)), h2(static_cast<size_t>(K + 1));
  // v_row = w / ‖w‖, or zero after a breakdown; returns ‖w‖ (0 after a breakdown).
  auto normalize_into = [&](int64_t row, double largest_projection) {
    double ss = 0;
    for (double x : w) ss += x * x;
    double beta = std::sqrt(ss);
    if (lanczos_breakdown(beta, largest_projection)) beta = 0;
    const double inv = beta > 0 ? 1.0 / beta : 0.0;
    for (int64_t i = 0; i < n; ++i) V[size_t(row * n + i)] = w[size_t(i)] * inv;
    return beta;
  };
  for (int64_t i = 0; i < n; ++i) w[size_t(i)] = lanczos_start(i);
  normalize_into(0, 0.0);
  double theta = 0;
  for (int64_t j = 0; j < K; ++j) {
    gemm<double>(false, false, n, 1, n, 1.0, C, n, &V[size_t(j * n)], 1, 0.0, w.data(), 1);
    double* h = &H[size_t(j * (K + 1))];
    for (int pass = 0; pass < 2; ++pass) {  // w −= V_{0..j} (V_{0..j}ᵀ w), twice
      double* coef = pass == 0 ? h : h2.data();
      for (int64_t r = 0; r <= j; ++r) {
        double d = 0;
        for (int64_t i = 0; i < n; ++i) d += V[size_t(r * n + i)] * w[size_t(i)];
        coef[r] = d;
      }
      for (int64_t r = 0; r <= j; ++r)
        for (int64_t i = 0; i < n; ++i) w[size_t(i)] -= coef[r] * V[size_t(r * n + i)];
    }
    double largest = 0;
    for (int64_t r = 0; r <= j; ++r) {
      h[r] += h2[size_t(r)];
      largest = std::max(largest, std::abs(h[r]));
    }
    h[j + 1] = normalize_into(j + 1, largest);
    const int64_t m = j + 1;
    if (!lanczos_check_due(m, K)) continue;
    bool done = false;
    theta = lanczos_check(H.data(), m, K, n, theta, &done);
    if (done) break;
  }
  return theta;
}

namespace {

class CpuSpectra final : public Spectra {
 public:
  explicit CpuSpectra(const std::vector<int64_t>& widths) {
    int64_t widest = 0;
    for (int64_t w : widths) {
      grams_.push_back({w, std::vector<double>(size_t(w * w))});
      widest = std::max(widest, w);
    }
    scratch_.resize(size_t(widest * widest));
  }

  void zero_grams() override {
    for (Gram& g : grams_) std::fill(g.sum.begin(), g.sum.end(), 0.0);
  }
  void add_gram(size_t k, const Tensor& x) override {
    Gram& g = grams_.at(k);
    MG_CHECK(x.dtype() == DType::f32 && x.ndim() == 2 && x.size(1) == g.width,
             "activation for Gram ", k, " must be f32 [rows, ", g.width, "]");
    gram(x.size(0), g.width, 1.0f, x.data<float>(), g.width, 0.0f, scratch_.data(), g.width);
    for (size_t i = 0; i < g.sum.size(); ++i) g.sum[i] += double(scratch_[i]);
  }
  void sum_grams(Comm& comm) override {
    for (Gram& g : grams_) comm.host_sum(g.sum.data(), int64_t(g.sum.size()));
  }
  std::vector<double> gram_stable_ranks(const std::vector<size_t>& ks) override {
    std::vector<double> out(ks.size());
    parallel_tasks(int64_t(ks.size()), [&](int64_t j, int) {
      const Gram& g = grams_.at(ks[size_t(j)]);
      const double trace = trace_if_finite(g.sum, g.width);
      const double top = trace > 0 ? lanczos_lambda_max(g.sum.data(), g.width) : 0.0;
      out[size_t(j)] = top > 0 ? trace / top : NAN;  // NaN: non-finite or zero, undefined
    });
    return out;
  }
  std::vector<MatrixRanks> ranks(const std::vector<MatrixRef>& ms, bool nuclear) override {
    std::vector<MatrixRanks> out(ms.size());
    parallel_tasks(int64_t(ms.size()), [&](int64_t j, int) {
      const MatrixRef& m = ms[size_t(j)];
      out[size_t(j)] = matrix_ranks(m.data, m.rows, m.cols, nuclear);
    });
    return out;
  }
  size_t memory_bytes() const override {
    size_t bytes = scratch_.capacity() * sizeof(float);
    for (const Gram& g : grams_) bytes += g.sum.capacity() * sizeof(double);
    return bytes;
  }
  std::vector<double> distances2(const std::vector<MatrixRef>& a,
                                 const std::vector<MatrixRef>& b) override {
    MG_CHECK(a.size() == b.size(), "distances2: ", a.size(), " vs ", b.size(), " matrices");
    std::vector<double> out;
    for (size_t i = 0; i < a.size(); ++i)
      out.push_back(sum_in_order(row_squares(a[i].data, b[i].data, a[i].rows, a[i].cols)));
    return out;
  }

 private:
  struct Gram {
    int64_t width;
    std::vector<double> sum;  // [width, width]
  };
  std::vector<Gram> grams_;
  std::vector<float> scratch_;  // one micro-batch's float32 Gram
};

}  // namespace

std::unique_ptr<Spectra> make_cpu_spectra(const std::vector<int64_t>& gram_widths) {
  return std::make_unique<CpuSpectra>(gram_widths);
}

}  // namespace muongpt
