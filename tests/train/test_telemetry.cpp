// Telemetry against a direct SVD (LAPACK dgesvd, an independent route from our Gram
// eigenvalues) of the same matrices, on a tiny model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "core/linalg.h"
#include "core/rng.h"
#include "testing/model_util.h"
#include "train/spectra.h"
#include "train/telemetry.h"

extern "C" void dgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, double* a,
                        const int* lda, double* s, double* u, const int* ldu, double* vt,
                        const int* ldvt, double* work, const int* lwork, int* info);

namespace muongpt {
namespace {

// Singular values of a row-major [m, n] matrix (LAPACK sees its transpose: same values).
std::vector<double> singular_values(const std::vector<double>& A, int m, int n) {
  std::vector<double> a = A, s(std::min(m, n)), work(1);
  int lwork = -1, info = 0, ldu = 1, ldvt = 1;
  double dummy = 0;
  dgesvd_("N", "N", &n, &m, a.data(), &n, s.data(), &dummy, &ldu, &dummy, &ldvt, work.data(),
          &lwork, &info);
  lwork = int(work[0]);
  work.resize(lwork);
  dgesvd_("N", "N", &n, &m, a.data(), &n, s.data(), &dummy, &ldu, &dummy, &ldvt, work.data(),
          &lwork, &info);
  EXPECT_EQ(info, 0);
  return s;
}

double svd_stable_rank(const std::vector<double>& s) {
  double f = 0;
  for (double x : s) f += x * x;
  return f / (s[0] * s[0]);
}
double svd_nuclear_rank(const std::vector<double>& s) {
  double f = 0, nuc = 0;
  for (double x : s) f += x * x, nuc += x;
  return nuc * nuc / f;
}

// λ_max by Lanczos (train/spectra.h) against LAPACK's full eigensolve, on the spectra that make
// Lanczos work hardest: a Gaussian Gram (its top eigenvalues crowd together), a rank-deficient
// one (breakdown), the identity (breakdown at once), two top eigenvalues 1e-9 apart, a diagonal
// wider than the 160 steps, and zero. Tolerance 1e-9: the convergence test's threshold.
TEST(Telemetry, LanczosFindsTheLargestEigenvalue) {
  auto gram = [](int64_t rows, int64_t n, uint64_t seed) {
    Rng rng(seed);
    std::vector<double> a(size_t(rows * n)), C(size_t(n * n));
    for (double& x : a) x = rng.normal();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j)
          C[size_t(i * n + j)] += a[size_t(r * n + i)] * a[size_t(r * n + j)];
    return C;
  };
  auto diagonal = [](const std::vector<double>& d) {
    const int64_t n = int64_t(d.size());
    std::vector<double> C(size_t(n * n));
    for (int64_t i = 0; i < n; ++i) C[size_t(i * n + i)] = d[size_t(i)];
    return C;
  };
  std::vector<double> pair(200), wide(300);
  for (size_t i = 0; i < pair.size(); ++i) pair[i] = 1.0 + double(i) / 400.0;
  pair[199] = pair[198] * (1 + 1e-9);
  for (size_t i = 0; i < wide.size(); ++i) wide[i] = std::sqrt(double(i + 1));
  const std::vector<std::pair<std::string, std::vector<double>>> cases = {
      {"gaussian 600 x 200", gram(600, 200, 1)},
      {"rank 5 of 120", gram(5, 120, 2)},
      {"identity", diagonal(std::vector<double>(50, 3.0))},
      {"top pair 1e-9 apart", diagonal(pair)},
      {"diagonal 300", diagonal(wide)},
      {"one", diagonal({2.5})}};
  for (const auto& [name, C] : cases) {
    const int64_t n = int64_t(std::lround(std::sqrt(double(C.size()))));
    std::vector<double> copy = C, w(static_cast<size_t>(n));
    sym_eigvals(n, copy.data(), w.data());
    EXPECT_NEAR(lanczos_lambda_max(C.data(), n), w.back(), 1e-9 * w.back()) << name;
  }
  EXPECT_EQ(lanczos_lambda_max(std::vector<double>(16, 0.0).data(), 4), 0.0);
}

// The CPU backend's Gram stable ranks (Lanczos) against gram_stable_rank (full eigensolve).
TEST(Telemetry, CpuSpectraStableRanksMatchTheFullEigensolve) {
  const std::vector<int64_t> widths = {64, 96, 64, 64};
  auto spectra = make_cpu_spectra(widths);
  spectra->zero_grams();
  Rng rng(5);
  std::vector<std::vector<double>> want(widths.size());
  for (size_t k = 0; k < widths.size(); ++k) {
    const int64_t w = widths[k], rows = 40 * int64_t(k + 1);
    std::vector<float> a(size_t(rows * w));
    for (float& x : a) x = float(rng.normal());
    if (k == 2) std::fill(a.begin(), a.end(), 0.0f);  // zero Gram: NaN
    if (k == 3) a[7] = NAN;                           // non-finite: NaN
    spectra->add_gram(k, Tensor(a.data(), DType::f32, {rows, w}));
    std::vector<double> C(size_t(w * w));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < w; ++i)
        for (int64_t j = 0; j < w; ++j)
          C[size_t(i * w + j)] += double(a[size_t(r * w + i)]) * a[size_t(r * w + j)];
    want[k] = C;
  }
  const auto st = spectra->gram_stable_ranks({0, 1, 2, 3});
  for (size_t k = 0; k < 2; ++k) {
    const double ref = gram_stable_rank(want[k], widths[k]);
    EXPECT_NEAR(st[k], ref, 1e-6 * ref) << k;  // float32 Gram vs the float64 one
  }
  EXPECT_TRUE(std::isnan(st[2]));
  EXPECT_TRUE(std::isnan(st[3]));
}

TEST(Telemetry, MatrixRanksMatchSvd) {
  Rng rng(1);
  // The last shape is an embedding-like gradient: tall, all rows zero but every 9th (the Gram
  // then comes from the non-zero rows alone).
  for (auto [m, n] : {std::pair{37, 12}, std::pair{12, 37}, std::pair{20, 20}, std::pair{200, 8}}) {
    std::vector<float> g(m * n);
    std::vector<double> gd(m * n);
    for (int i = 0; i < m * n; ++i)
      gd[i] = g[i] = m == 200 && (i / n) % 9 != 0 ? 0.0f : float(rng.normal());
    MatrixRanks r = matrix_ranks(g.data(), m, n);
    MatrixRanks top = matrix_ranks(g.data(), m, n, /*nuclear=*/false);  // λ_max by Lanczos
    EXPECT_EQ(top.fro2, r.fro2);
    EXPECT_NEAR(top.spec2, r.spec2, 1e-9 * r.spec2) << m << "x" << n;
    EXPECT_TRUE(std::isnan(top.nuclear));
    auto s = singular_values(gd, m, n);
    EXPECT_NEAR(r.stable_rank(), svd_stable_rank(s), 1e-4 * svd_stable_rank(s)) << m << "x" << n;
    EXPECT_NEAR(r.nuclear_rank(), svd_nuclear_rank(s), 1e-4 * svd_nuclear_rank(s)) << m << "x" << n;
  }
  // A rank-one matrix: both ranks are 1.
  std::vector<float> u = {1, 2, 3}, v = {4, -1}, g(6);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 2; ++j) g[i * 2 + j] = u[i] * v[j];
  MatrixRanks r = matrix_ranks(g.data(), 3, 2);
  EXPECT_NEAR(r.stable_rank(), 1.0, 1e-6);
  EXPECT_NEAR(r.nuclear_rank(), 1.0, 1e-3);  // float Gram: the zero eigenvalue is ~1e-6 off
}

// The float64 norms and distances are summed row by row over the CPU threads: they stay within
// rounding of one long-double sum, rows of any length (an odd one exercises the tail), and a
// NaN anywhere reaches the result.
TEST(Telemetry, CpuNormsAndDistancesAreFloat64Sums) {
  Rng rng(3);
  const int64_t m = 301, n = 37;
  std::vector<float> a(size_t(m * n)), b(size_t(m * n));
  for (float& x : a) x = float(rng.normal());
  for (float& x : b) x = float(rng.normal());
  long double want_a2 = 0, want_d2 = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    want_a2 += (long double)a[i] * a[i];
    want_d2 += ((long double)a[i] - b[i]) * ((long double)a[i] - b[i]);
  }
  auto spectra = make_cpu_spectra({});
  const auto d2 = spectra->distances2({{a.data(), m, n}, {b.data(), m, n}},
                                      {{b.data(), m, n}, {b.data(), m, n}});
  EXPECT_NEAR(d2[0], double(want_d2), 1e-13 * double(want_d2));
  EXPECT_EQ(d2[1], 0.0);
  EXPECT_NEAR(matrix_ranks(a.data(), m, n).fro2, double(want_a2), 1e-13 * double(want_a2));
  a[size_t(m * n / 2)] = NAN;
  EXPECT_TRUE(std::isnan(spectra->distances2({{a.data(), m, n}}, {{b.data(), m, n}})[0]));
  EXPECT_TRUE(std::isnan(matrix_ranks(a.data(), m, n).fro2));
  // Finite entries whose float32 Gram overflows: a defined norm, undefined (NaN) ranks.
  for (float& x : b) x *= 1e20f;
  for (bool nuclear : {true, false}) {
    const MatrixRanks r = matrix_ranks(b.data(), m, n, nuclear);
    EXPECT_TRUE(std::isfinite(r.fro2) && r.fro2 > 1e40);
    EXPECT_TRUE(std::isnan(r.spec2));
    EXPECT_TRUE(std::isnan(r.nuclear));
  }
}
TEST(Telemetry, OnATinyModelMatchesSvdOfTheSameMatrices) {
  const ModelConfig cfg = testing::tiny_config();
  const int64_t B = 2, T = 16, N = B * T;
  Gpt<float> model(cfg, B, T);
  testing::randomize_params(model, 5);
  auto view = view_cpu_model(model);
  RankTelemetry tel(*view, 1);
  ASSERT_TRUE(tel.due(1) && tel.due(2) && tel.due(7));
  Rng rng(2);
  tel.begin();
  model.zero_grads();
  // Two micro-batches: telemetry covers the tokens of both.
  std::vector<std::vector<double>> attn_in_rows, mlp_act_rows;
  std::vector<int32_t> all_idx;
  for (int micro = 0; micro < 2; ++micro) {
    std::vector<int32_t> idx(N), tgt(N);
    for (auto& t : idx) t = int32_t(rng.below(micro == 0 ? 5 : cfg.vocab_size));  // skewed
    for (auto& t : tgt) t = int32_t(rng.below(cfg.vocab_size));
    model.forward(idx.data(), tgt.data());
    tel.add_activations(*view, idx.data(), N);
    for (auto [name, rows] :
         {std::pair{"attn_in", &attn_in_rows}, std::pair{"mlp_act", &mlp_act_rows}}) {
      Tensor a = model.activation(name, 1);
      for (int64_t i = 0; i < a.size(0); ++i)
        rows->emplace_back(a.data<float>() + i * a.size(1), a.data<float>() + (i + 1) * a.size(1));
    }
    all_idx.insert(all_idx.end(), idx.begin(), idx.end());
    model.backward(0.5f);
  }
  tel.add_gradients(*view);
  // A stand-in optimizer step: W ← W − 0.1·G, and the update it applied.
  float* w = model.params_flat().data<float>();
  const float* g = model.grads_flat().data<float>();
  std::vector<float> before(w, w + model.params_flat().numel());
  for (int64_t i = 0; i < model.params_flat().numel(); ++i) w[i] -= 0.1f * g[i];
  std::vector<float> delta(before.size());
  for (size_t i = 0; i < delta.size(); ++i) delta[i] = w[i] - before[i];
  nlohmann::json rec = tel.finish(*view, 1, [&](size_t i) {
    const int64_t off = model.param(i).data<float>() - model.params_flat().data<float>();
    return std::span<const float>(delta.data() + off, size_t(model.specs()[i].numel()));
  });

  EXPECT_EQ(rec["step"], 1);
  EXPECT_EQ(rec["tokens"], 2 * N);
  // Token matrix: st = 1 / p_max.
  std::vector<int> counts(cfg.vocab_size);
  for (int32_t t : all_idx) counts[t]++;
  const double p_max = *std::max_element(counts.begin(), counts.end()) / double(all_idx.size());
  EXPECT_DOUBLE_EQ(rec["act"]["tokens"]["p_max"].get<double>(), p_max);
  EXPECT_NEAR(rec["act"]["tokens"]["st"].get<double>(), 1.0 / p_max, 1e-12);
  // Activation stable ranks over both micro-batches = SVD of the stacked matrix.
  for (auto [key, rows] : {std::pair{"blocks.1.attn_in", &attn_in_rows},
                           std::pair{"blocks.1.mlp_act", &mlp_act_rows}}) {
    const int m = int(rows->size()), n = int((*rows)[0].size());
    std::vector<double> A;
    for (auto& r : *rows) A.insert(A.end(), r.begin(), r.end());
    const double want = svd_stable_rank(singular_values(A, m, n));
    EXPECT_NEAR(rec["act"][key]["st"].get<double>(), want, 1e-4 * want) << key;
  }
  // Gradient and update ranks of a weight, and the ratio against its input.
  const int i = model.find("blocks.1.mlp.w1");
  const ParamSpec& s = model.specs()[i];
  std::vector<double> G(model.grad(i).data<float>(), model.grad(i).data<float>() + s.numel());
  auto sg = singular_values(G, int(s.shape[0]), int(s.shape[1]));
  const auto& rw = rec["weights"]["blocks.1.mlp.w1"];
  EXPECT_EQ(rw["input"], "blocks.1.mlp_in");
  EXPECT_NEAR(rw["grad_nr"].get<double>(), svd_nuclear_rank(sg), 1e-3 * svd_nuclear_rank(sg));
  EXPECT_NEAR(rw["grad_st"].get<double>(), svd_stable_rank(sg), 1e-4 * svd_stable_rank(sg));
  EXPECT_NEAR(rw["update_st"].get<double>(), svd_stable_rank(sg), 1e-3 * svd_stable_rank(sg));
  double g2 = 0, w2 = 0;
  const int64_t off = model.param(i).data<float>() - model.params_flat().data<float>();
  for (int64_t j = 0; j < s.numel(); ++j)
    g2 += 0.01 * G[j] * G[j], w2 += double(before[off + j]) * before[off + j];
  EXPECT_NEAR(rw["update_rel"].get<double>(), std::sqrt(g2 / w2), 1e-4 * std::sqrt(g2 / w2));
  EXPECT_NEAR(rw["ratio"].get<double>(),
              rw["grad_nr"].get<double>() / rec["act"]["blocks.1.mlp_in"]["st"].get<double>(),
              1e-12);
  EXPECT_EQ(rec["weights"]["blocks.0.mlp.w2"]["alt_input"], "blocks.0.mlp_pre");
  EXPECT_EQ(rec["weights"]["embed.weight"]["input"], "tokens");
  EXPECT_FALSE(rec["weights"].contains("blocks.0.attn_norm.weight"));  // only matrices
  EXPECT_GT(rec["seconds"].get<double>(), 0.0);
}

// The gated MLP (mlp = "swiglu"): both of w2's input's factors are measured, mlp_gate =
// silu(mlp_pre) and mlp_up = m·w3ᵀ (width F), besides mlp_pre and mlp_act; w3 multiplies mlp_in
// like w1; a relu2 record has none of the new keys (only keys are added to the schema). The gate
// is recomputed here from mlp_pre, and its stable rank checked against an SVD.
TEST(Telemetry, SwigluMeasuresBothBranches) {
  const ModelConfig cfg = testing::tiny_swiglu_config();
  const int64_t B = 2, T = 16, N = B * T, F = cfg.mlp_width();
  Gpt<float> model(cfg, B, T);
  testing::randomize_params(model, 6);
  auto view = view_cpu_model(model);
  RankTelemetry tel(*view, 1);
  Rng rng(3);
  std::vector<int32_t> idx(N), tgt(N);
  for (auto& t : idx) t = int32_t(rng.below(cfg.vocab_size));
  for (auto& t : tgt) t = int32_t(rng.below(cfg.vocab_size));
  tel.begin();
  model.zero_grads();
  model.forward(idx.data(), tgt.data());
  tel.add_activations(*view, idx.data(), N);
  std::vector<double> gate, up;
  const Tensor pre = model.activation("mlp_pre", 1), u = model.activation("mlp_up", 1);
  ASSERT_EQ(pre.size(1), F);
  ASSERT_EQ(u.size(1), F);
  for (int64_t i = 0; i < N * F; ++i) {
    const double h = pre.data<float>()[i];
    gate.push_back(h / (1 + std::exp(-h)));
    up.push_back(u.data<float>()[i]);
  }
  model.backward();
  tel.add_gradients(*view);
  const nlohmann::json rec = tel.finish(*view, 1, [](size_t) { return std::span<const float>(); });

  for (auto [key, A] : {std::pair{"blocks.1.mlp_gate", &gate}, std::pair{"blocks.1.mlp_up", &up}}) {
    const double want = svd_stable_rank(singular_values(*A, int(N), int(F)));
    EXPECT_NEAR(rec["act"][key]["st"].get<double>(), want, 1e-4 * want) << key;
  }
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".";
    for (const char* kind :
         {"attn_in", "attn_out", "mlp_in", "mlp_pre", "mlp_up", "mlp_gate", "mlp_act"})
      EXPECT_TRUE(rec["act"].contains(b + kind)) << b + kind;
    const auto& w3 = rec["weights"][b + "mlp.w3"];
    EXPECT_EQ(w3["input"], b + "mlp_in");
    EXPECT_FALSE(w3.contains("alt_input"));
    EXPECT_NEAR(w3["ratio"].get<double>(),
                w3["grad_nr"].get<double>() / rec["act"][b + "mlp_in"]["st"].get<double>(), 1e-12);
    EXPECT_EQ(rec["weights"][b + "mlp.w1"]["input"], b + "mlp_in");
    EXPECT_EQ(rec["weights"][b + "mlp.w2"]["input"], b + "mlp_act");
    EXPECT_EQ(rec["weights"][b + "mlp.w2"]["alt_input"], b + "mlp_pre");
  }
  // Two more F × F Grams per block than the relu2 model of the same width.
  ModelConfig plain = cfg;
  plain.mlp = "relu2";
  EXPECT_EQ(RankTelemetry::planned_bytes(cfg, 1),
            RankTelemetry::planned_bytes(plain, 1) + size_t(cfg.n_layer) * 2 * 8 * size_t(F * F));

  Gpt<float> relu2(testing::tiny_config(), 1, 4);
  auto relu2_view = view_cpu_model(relu2);
  RankTelemetry relu2_tel(*relu2_view, 1);
  relu2_tel.begin();
  std::vector<int32_t> few = {1, 2, 3, 4};
  relu2.init_params(1);
  relu2.forward(few.data(), few.data());
  relu2_tel.add_activations(*relu2_view, few.data(), 4);
  const nlohmann::json old =
      relu2_tel.finish(*relu2_view, 1, [](size_t) { return std::span<const float>(); });
  EXPECT_TRUE(old["act"].contains("blocks.0.mlp_pre"));
  EXPECT_FALSE(old["act"].contains("blocks.0.mlp_up"));
  EXPECT_FALSE(old["act"].contains("blocks.0.mlp_gate"));
  EXPECT_THROW(relu2.activation("mlp_gate", 0), Error);
}

TEST(Telemetry, OffWhenEveryIsZero) {
  Gpt<float> model(testing::tiny_config(), 1, 4);
  auto view = view_cpu_model(model);
  RankTelemetry tel(*view, 0);
  EXPECT_FALSE(tel.due(1));
  RankTelemetry on(*view, 50);
  EXPECT_TRUE(on.due(1));
  EXPECT_TRUE(on.due(2));
  EXPECT_FALSE(on.due(3));
  EXPECT_TRUE(on.due(100));
}

}  // namespace
}  // namespace muongpt
