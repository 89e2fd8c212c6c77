// Every op's backward against finite differences of its forward, in double precision.
// Each op is wrapped as a scalar loss L = Σ w ⊙ op(inputs) with a fixed random w, so dL/dout = w.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "model/ops/attention.h"
#include "model/ops/cross_entropy.h"
#include "model/ops/embedding.h"
#include "model/ops/linear.h"
#include "model/ops/relu2.h"
#include "model/ops/rmsnorm.h"
#include "model/ops/rope.h"
#include "model/ops/swiglu.h"
#include "testing/gradcheck.h"

namespace muongpt {
namespace {

using Vec = std::vector<double>;
constexpr double kTol = 1e-6;

Vec randn(size_t n, Rng& rng, double scale = 1.0) {
  Vec v(n);
  for (auto& x : v) x = scale * rng.normal();
  return v;
}

double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Checks the analytic gradient `grad` of input `x` of the scalar `loss`.
void expect_grad(const char* what, Vec& x, const Vec& grad, const std::function<double()>& loss,
                 Rng& rng, int samples = 40) {
  auto r = testing::check_entries(x.data(), grad.data(), x.size(), loss, samples, rng, kTol);
  EXPECT_LT(r.max_error, kTol) << what << ": entry " << r.worst_index << " analytic "
                               << r.worst_analytic << " numeric " << r.worst_numeric;
  EXPECT_EQ(r.skipped, 0) << what << ": these ops are smooth at the sampled points";
  EXPECT_EQ(r.checked, std::min<int>(samples, int(x.size()))) << what;
}

class RmsNormGrad : public ::testing::TestWithParam<bool> {};

TEST_P(RmsNormGrad, MatchesFiniteDifferences) {
  const bool with_gain = GetParam();
  const int64_t rows = 6, n = 24;
  Rng rng(1);
  Vec x = randn(rows * n, rng), g = randn(n, rng, 0.3), w = randn(rows * n, rng);
  for (auto& v : g) v += 1.0;
  const double* gp = with_gain ? g.data() : nullptr;
  Vec y(rows * n), rstd(rows);
  auto loss = [&] {
    rmsnorm_forward(y.data(), rstd.data(), x.data(), gp, rows, n, 1e-6);
    return dot(w, y);
  };
  loss();
  Vec dx(rows * n, 0.0), dg(n, 0.0);
  rmsnorm_backward(dx.data(), with_gain ? dg.data() : nullptr, w.data(), x.data(), gp, rstd.data(),
                   rows, n, false);
  expect_grad("dx", x, dx, loss, rng);
  if (with_gain) expect_grad("dg", g, dg, loss, rng);

  // accumulate = true adds to what dx held; in place (dx aliasing dy) overwrites.
  loss();  // the checks above left rstd from a perturbed x
  Vec acc(rows * n, 0.5);
  rmsnorm_backward(acc.data(), (double*)nullptr, w.data(), x.data(), gp, rstd.data(), rows, n,
                   true);
  for (size_t i = 0; i < acc.size(); ++i) ASSERT_NEAR(acc[i], 0.5 + dx[i], 1e-12);
  Vec inplace = w;
  rmsnorm_backward(inplace.data(), (double*)nullptr, inplace.data(), x.data(), gp, rstd.data(),
                   rows, n, false);
  for (size_t i = 0; i < inplace.size(); ++i) ASSERT_NEAR(inplace[i], dx[i], 1e-12);
}

INSTANTIATE_TEST_SUITE_P(Gain, RmsNormGrad, ::testing::Values(false, true));

TEST(RopeGrad, MatchesFiniteDifferencesAndPreservesNorms) {
  const int64_t B = 2, T = 7, H = 2, dh = 16;
  Rng rng(2);
  Vec cos(T * dh / 2), sin(T * dh / 2);
  rope_tables(cos.data(), sin.data(), T, dh, 1024.0);
  Vec x = randn(B * T * H * dh, rng), w = randn(x.size(), rng), y(x.size());
  auto loss = [&] {
    y = x;
    rope_forward(y.data(), cos.data(), sin.data(), B, T, H, dh);
    return dot(w, y);
  };
  loss();
  // A rotation: every row keeps its norm; position 0 and the zero-frequency half are unchanged.
  for (int64_t r = 0; r < B * T * H; ++r) {
    double nx = 0, ny = 0;
    for (int64_t j = 0; j < dh; ++j)
      nx += x[r * dh + j] * x[r * dh + j], ny += y[r * dh + j] * y[r * dh + j];
    ASSERT_NEAR(nx, ny, 1e-10);
    const int64_t t = (r / H) % T;
    for (int64_t j = 0; j < dh; ++j) {
      const bool still = t == 0 || (j % (dh / 2)) >= dh / 4;
      if (still) ASSERT_EQ(x[r * dh + j], y[r * dh + j]) << "row " << r << " dim " << j;
    }
  }
  Vec dx = w;
  rope_backward(dx.data(), cos.data(), sin.data(), B, T, H, dh);
  expect_grad("dx", x, dx, loss, rng);
}

TEST(AttentionGrad, MatchesFiniteDifferences) {
  const int64_t B = 2, T = 5, H = 2, dh = 8;
  const double scale = 0.3;
  Rng rng(3);
  const size_t n = B * T * H * dh;
  Vec q = randn(n, rng), k = randn(n, rng), v = randn(n, rng), w = randn(n, rng);
  Vec y(n), probs(B * H * T * T);
  auto loss = [&] {
    attention_forward(y.data(), probs.data(), q.data(), k.data(), v.data(), B, T, H, dh, scale);
    return dot(w, y);
  };
  loss();
  // Causality: the first position attends only to itself.
  for (int64_t bh = 0; bh < B * H; ++bh) ASSERT_DOUBLE_EQ(probs[bh * T * T], 1.0);
  Vec dq(n), dk(n), dv(n), scratch(T * T);
  attention_backward(dq.data(), dk.data(), dv.data(), scratch.data(), w.data(), probs.data(),
                     q.data(), k.data(), v.data(), B, T, H, dh, scale);
  expect_grad("dq", q, dq, loss, rng);
  expect_grad("dk", k, dk, loss, rng);
  expect_grad("dv", v, dv, loss, rng);
}

TEST(Relu2Grad, MatchesFiniteDifferences) {
  Rng rng(4);
  Vec h = randn(64, rng), w = randn(64, rng), out(64);
  auto loss = [&] {
    relu2_forward(out.data(), h.data(), 64);
    return dot(w, out);
  };
  Vec dh(64);
  relu2_backward(dh.data(), w.data(), h.data(), 64);
  expect_grad("dh", h, dh, loss, rng, 64);
}

// Both branches' gradients; h spans silu's interesting range (its minimum near h = −1.28, the
// saturated tails at |h| ≈ 6), and the in-place form (dh aliasing dact).
TEST(SwigluGrad, MatchesFiniteDifferences) {
  const int64_t n = 96;
  Rng rng(8);
  Vec h = randn(n, rng, 2.5), u = randn(n, rng), w = randn(n, rng), gate(n), act(n);
  auto loss = [&] {
    swiglu_forward(act.data(), gate.data(), h.data(), u.data(), n);
    return dot(w, act);
  };
  loss();
  for (int64_t i = 0; i < n; ++i) {  // the definition, written out independently
    const double g = h[i] / (1 + std::exp(-h[i]));
    ASSERT_NEAR(gate[i], g, 1e-15 * (1 + std::abs(g))) << i;
    ASSERT_NEAR(act[i], g * u[i], 1e-15 * (1 + std::abs(g * u[i]))) << i;
  }
  Vec dh(n), du(n);
  swiglu_backward(dh.data(), du.data(), w.data(), h.data(), u.data(), n);
  expect_grad("dh", h, dh, loss, rng, int(n));
  expect_grad("du", u, du, loss, rng, int(n));

  Vec inplace = w, du2(n);
  swiglu_backward(inplace.data(), du2.data(), inplace.data(), h.data(), u.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(inplace[i], dh[i]) << i;
    ASSERT_EQ(du2[i], du[i]) << i;
  }
}

// σ(h) = 1/(1 + e^(−h)) overflows e^(−h) for very negative h: the results must still be the
// limits (silu → −0, silu' → 0; for large h silu → h, silu' → 1), never NaN, in float too.
TEST(SwigluGrad, SaturatesWithoutNaN) {
  for (float h : {-1e4f, -1000.f, -100.f, -89.f, 89.f, 100.f, 1e4f}) {
    const float g = silu(h), dg = silu_grad(h);
    EXPECT_TRUE(std::isfinite(g) && std::isfinite(dg)) << h;
    if (h < 0) {
      EXPECT_LE(std::abs(g), 1e-30f) << h;
      EXPECT_LE(std::abs(dg), 1e-30f) << h;
    } else {
      EXPECT_EQ(g, h);
      EXPECT_EQ(dg, 1.f) << h;
    }
  }
  EXPECT_EQ(silu(0.0), 0.0);
  EXPECT_EQ(silu_grad(0.0), 0.5);
}

TEST(LinearGrad, MatchesFiniteDifferencesWithResidual) {
  const int64_t N = 5, in = 7, out = 3;
  Rng rng(5);
  Vec x = randn(N * in, rng), W = randn(out * in, rng), res = randn(N * out, rng);
  Vec w = randn(N * out, rng), y(N * out);
  auto loss = [&] {
    linear_add(y.data(), res.data(), x.data(), W.data(), N, in, out);
    return dot(w, y);
  };
  Vec dx(N * in), dW(out * in, 0.0);
  linear_backward(dx.data(), dW.data(), w.data(), x.data(), W.data(), N, in, out, false);
  expect_grad("dx", x, dx, loss, rng);
  expect_grad("dW", W, dW, loss, rng);
  expect_grad("dresidual", res, w, loss, rng);
}

class CrossEntropyGrad : public ::testing::TestWithParam<double> {};

TEST_P(CrossEntropyGrad, MatchesFiniteDifferences) {
  const double cap = GetParam();
  const int64_t N = 6, V = 11;
  Rng rng(6);
  Vec logits = randn(N * V, rng, 8.0), z(N * V), lse(N);
  std::vector<int32_t> targets(N);
  for (auto& t : targets) t = static_cast<int32_t>(rng.below(V));
  const double dloss = 0.7;
  auto loss = [&] {
    z = logits;
    return dloss * softcap_cross_entropy_forward(z.data(), lse.data(), targets.data(), N, V, cap);
  };
  loss();
  Vec dl = z;
  softcap_cross_entropy_backward(dl.data(), lse.data(), targets.data(), N, V, cap, dloss);
  expect_grad("dlogits", logits, dl, loss, rng, 66);
}

INSTANTIATE_TEST_SUITE_P(Cap, CrossEntropyGrad, ::testing::Values(0.0, 15.0));

TEST(CrossEntropy, UniformLogitsGiveLogV) {
  const int64_t N = 3, V = 50;
  Vec z(N * V, 0.25), lse(N);
  std::vector<int32_t> targets = {0, 17, 49};
  EXPECT_NEAR(softcap_cross_entropy_forward(z.data(), lse.data(), targets.data(), N, V, 15.0),
              std::log(50.0), 1e-12);
}

TEST(EmbeddingGrad, MatchesFiniteDifferencesWithRepeatedTokens) {
  const int64_t V = 9, d = 4, N = 12;
  Rng rng(7);
  Vec table = randn(V * d, rng), w = randn(N * d, rng), out(N * d);
  std::vector<int32_t> idx = {1, 3, 3, 0, 8, 1, 1, 5, 3, 2, 0, 8};
  auto loss = [&] {
    embedding_forward(out.data(), table.data(), idx.data(), N, d);
    return dot(w, out);
  };
  Vec dtable(V * d, 0.0);
  embedding_backward(dtable.data(), w.data(), idx.data(), N, d);
  expect_grad("dtable", table, dtable, loss, rng, int(V * d));
  for (int64_t j = 0; j < d; ++j) EXPECT_EQ(dtable[4 * d + j], 0.0);  // token 4 never appears
}

}  // namespace
}  // namespace muongpt
