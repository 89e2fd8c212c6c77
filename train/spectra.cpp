#include "train/spectra.h"

#include <algorithm>

#include "core/comm.h"
#include "core/error.h"
#include "core/gemm.h"
#include "core/linalg.h"

namespace muongpt {

MatrixRanks matrix_ranks(const float* G, int64_t m, int64_t n) {
  MatrixRanks r;
  for (int64_t i = 0; i < m * n; ++i) r.fro2 += double(G[i]) * double(G[i]);
  if (!std::isfinite(r.fro2)) return {NAN, NAN, NAN};  // reported as null, never fed to LAPACK
  if (r.fro2 == 0) return r;
  const int64_t s = std::min(m, n);
  std::vector<float> gf(static_cast<size_t>(s * s));
  if (n <= m)
    gram(m, n, 1.0f, G, n, 0.0f, gf.data(), n);  // GᵀG [n, n]
  else
    gemm(false, true, m, m, n, 1.0f, G, n, G, n, 0.0f, gf.data(), m);  // GGᵀ [m, m]
  std::vector<double> C(gf.begin(), gf.end()), w(static_cast<size_t>(s));
  for (double c : C)
    if (!std::isfinite(c)) return {r.fro2, NAN, NAN};  // float32 Gram overflowed
  sym_eigvals(s, C.data(), w.data());
  for (double e : w) r.nuclear += std::sqrt(std::max(e, 0.0));
  r.spec2 = std::max(w.back(), 0.0);
  return r;
}

double gram_stable_rank(const std::vector<double>& C, int64_t n) {
  double trace = 0;
  for (int64_t i = 0; i < n; ++i) trace += C[i * n + i];
  for (double c : C)
    if (!std::isfinite(c)) return NAN;  // reported as null, never fed to LAPACK
  if (trace <= 0) return NAN;           // a zero activation: undefined
  std::vector<double> copy = C, w(static_cast<size_t>(n));
  sym_eigvals(n, copy.data(), w.data());
  return w.back() > 0 ? trace / w.back() : NAN;
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
    std::vector<double> out;
    for (size_t k : ks) out.push_back(gram_stable_rank(grams_.at(k).sum, grams_.at(k).width));
    return out;
  }
  std::vector<MatrixRanks> ranks(const std::vector<MatrixRef>& ms) override {
    std::vector<MatrixRanks> out;
    for (const MatrixRef& m : ms) out.push_back(matrix_ranks(m.data, m.rows, m.cols));
    return out;
  }
  std::vector<double> distances2(const std::vector<MatrixRef>& a,
                                 const std::vector<MatrixRef>& b) override {
    MG_CHECK(a.size() == b.size(), "distances2: ", a.size(), " vs ", b.size(), " matrices");
    std::vector<double> out;
    for (size_t i = 0; i < a.size(); ++i) {
      double s = 0;
      for (int64_t j = 0; j < a[i].rows * a[i].cols; ++j) {
        const double d = double(a[i].data[j]) - double(b[i].data[j]);
        s += d * d;
      }
      out.push_back(s);
    }
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
