// The dualizers: the identities that define them (Schatten-p duality, the polar factor), the
// Newton–Schulz singular-value band, and the seed blog's stable-rank observation.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/gemm.h"
#include "optim/dualizer.h"
#include "optim/optim_testing.h"

namespace muongpt {
namespace {

using testing::dot;
using testing::dualized;
using testing::gaussian;
using testing::schatten_norm;
using testing::spec;
using testing::stable_rank;
using testing::with_spectrum;

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Shape {
  int64_t m, n;
};
const Shape kShapes[] = {{24, 36}, {36, 24}, {30, 30}};

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double(a[i]) - double(b[i])));
  return d;
}

// max |(T Tᵀ − I)ᵢⱼ| over the smaller Gram matrix of T [m, n].
double orthogonality_error(const std::vector<float>& t, int64_t m, int64_t n) {
  const bool rows = m <= n;
  const int64_t k = rows ? m : n;
  double worst = 0;
  for (int64_t a = 0; a < k; ++a)
    for (int64_t b = 0; b < k; ++b) {
      double s = 0;
      if (rows)
        for (int64_t j = 0; j < n; ++j) s += double(t[a * n + j]) * t[b * n + j];
      else
        for (int64_t i = 0; i < m; ++i) s += double(t[i * n + a]) * t[i * n + b];
      worst = std::max(worst, std::abs(s - (a == b ? 1.0 : 0.0)));
    }
  return worst;
}

TEST(Dualizer, SchattenTwoIsTheFrobeniusDirection) {
  for (const Shape& s : kShapes) {
    auto x = gaussian(s.m, s.n, 11);
    const double fro = std::sqrt(dot(x, x));
    std::vector<float> expect(x.size());
    for (size_t i = 0; i < x.size(); ++i) expect[i] = float(x[i] / fro);
    EXPECT_LT(max_abs_diff(dualized("schatten-p:2", x, s.m, s.n), expect), 1e-6)
        << s.m << "x" << s.n;
    EXPECT_LT(max_abs_diff(dualized("frobenius", x, s.m, s.n), expect), 1e-7);
  }
}

TEST(Dualizer, SchattenInfinityIsTheExactPolarFactor) {
  for (const Shape& s : kShapes) {
    auto x = gaussian(s.m, s.n, 12);
    auto polar = dualized("polar", x, s.m, s.n);
    EXPECT_EQ(max_abs_diff(dualized("schatten-p:inf", x, s.m, s.n), polar), 0.0);
    // (Semi-)orthogonal: T Tᵀ = I for wide, TᵀT = I for tall, both for square.
    EXPECT_LT(orthogonality_error(polar, s.m, s.n), 2e-6) << s.m << "x" << s.n;
    // It is U Vᵀ for X = U Σ Vᵀ: then X Tᵀ = U Σ Uᵀ (m ≤ n; Tᵀ X = V Σ Vᵀ otherwise) is
    // symmetric with eigenvalues σ, so its trace is the nuclear norm.
    const auto sigma = singular_values(x.data(), s.m, s.n);
    EXPECT_NEAR(dot(x, polar), schatten_norm(sigma, 1.0), 1e-5 * schatten_norm(sigma, 1.0));
    const bool left = s.m <= s.n;
    const int64_t k = left ? s.m : s.n;
    double asym = 0, scale = 0;
    for (int64_t a = 0; a < k; ++a)
      for (int64_t b = 0; b < k; ++b) {
        double ab = 0, ba = 0;
        for (int64_t j = 0; j < (left ? s.n : s.m); ++j) {
          if (left) {
            ab += double(x[a * s.n + j]) * polar[b * s.n + j];
            ba += double(x[b * s.n + j]) * polar[a * s.n + j];
          } else {
            ab += double(polar[j * s.n + a]) * x[j * s.n + b];
            ba += double(polar[j * s.n + b]) * x[j * s.n + a];
          }
        }
        asym = std::max(asym, std::abs(ab - ba));
        scale = std::max(scale, std::abs(ab));
      }
    EXPECT_LT(asym / scale, 1e-5) << s.m << "x" << s.n;
  }
  // A rank-deficient input: the polar factor is the partial isometry on its range.
  auto low = with_spectrum(20, 30, {3.0, 2.0, 1.0}, 5);
  auto t = dualized("polar", low, 20, 30);
  auto sv = singular_values(t.data(), 20, 30);
  for (size_t i = 0; i < sv.size(); ++i) EXPECT_NEAR(sv[i], i < 3 ? 1.0 : 0.0, 1e-5) << i;
}

TEST(Dualizer, InnerProductIsTheDualNorm) {
  // ⟨X, dualize_p(X)⟩ = ‖X‖_{S_q} with 1/p + 1/q = 1, and ‖dualize_p(X)‖_{S_p} = 1.
  const double ps[] = {1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 8.0, 32.0, kInf};
  for (const Shape& s : kShapes) {
    auto x = gaussian(s.m, s.n, 13);
    const auto sigma = singular_values(x.data(), s.m, s.n);
    for (double p : ps) {
      const double q = p == 1.0 ? kInf : std::isinf(p) ? 1.0 : p / (p - 1);
      char name[48];
      std::snprintf(name, sizeof name, std::isinf(p) ? "schatten-p:inf" : "schatten-p:%g", p);
      auto t = dualized(name, x, s.m, s.n);
      const double dual = schatten_norm(sigma, q);
      EXPECT_NEAR(dot(x, t), dual, 2e-6 * dual) << name << " " << s.m << "x" << s.n;
      const auto tsig = singular_values(t.data(), s.m, s.n);
      EXPECT_NEAR(schatten_norm(tsig, p), 1.0, 2e-6) << name << " " << s.m << "x" << s.n;
    }
    // sign: the dual of the max-of-max norm is the entrywise L1 norm; ‖sign X‖_max = 1.
    auto sg = dualized("sign", x, s.m, s.n);
    double l1 = 0, mx = 0;
    for (size_t i = 0; i < x.size(); ++i) l1 += std::abs(double(x[i]));
    for (float v : sg) mx = std::max(mx, double(std::abs(v)));
    EXPECT_NEAR(dot(x, sg), l1, 1e-9 * l1);
    EXPECT_EQ(mx, 1.0);
    // frobenius: self-dual.
    EXPECT_NEAR(dot(x, dualized("frobenius", x, s.m, s.n)), std::sqrt(dot(x, x)), 1e-6);
  }
}

TEST(Dualizer, SchattenOneKeepsTheTopSingularPair) {
  auto x = with_spectrum(16, 24, {5.0, 3.0, 2.0, 1.0, 0.5}, 21);
  auto t = dualized("schatten-p:1", x, 16, 24);
  auto sv = singular_values(t.data(), 16, 24);
  EXPECT_NEAR(sv[0], 1.0, 1e-6);
  EXPECT_LT(sv[1], 1e-6);
}

// The jordan quintic f(x) = 3.4445x − 4.7750x³ + 2.0315x⁵ composed five times maps every
// normalised singular value x = σ/‖X‖_F in [kLow, 1] into [0.6, 1.25] (in exact arithmetic the
// image of [1.31e-3, 1] is [0.600, 1.203]); below ~1.3e-3 it stays under 0.6. The matrix tests
// use kLow = 2e-3 (image ≥ 0.68) to leave room for float32 rounding.
constexpr double kLow = 2e-3;

double jordan5(double x) {
  for (int i = 0; i < 5; ++i) x = 3.4445 * x - 4.7750 * x * x * x + 2.0315 * x * x * x * x * x;
  return x;
}

TEST(NewtonSchulz, JordanPolynomialBand) {
  double lo = 10, hi = 0;
  for (double x = 1.31e-3; x <= 1.0; x *= 1.0005) {
    lo = std::min(lo, jordan5(x));
    hi = std::max(hi, jordan5(x));
  }
  EXPECT_GE(lo, 0.6);
  EXPECT_LE(hi, 1.25);
  EXPECT_LT(jordan5(1.2e-3), 0.6);  // the band's lower edge is real
}

// Checks NS5 (jordan) on X: no singular value exceeds 1.25, and only as many fall below 0.6 as
// X has singular values with σ/‖X‖_F < kLow. Returns the band of the others (the largest
// min(m, n) − small outputs) and the number of small inputs.
std::pair<double, double> check_ns_band(const std::vector<float>& x, int64_t m, int64_t n,
                                        int* n_small) {
  auto out = dualized("ns5", x, m, n);
  const auto in = singular_values(x.data(), m, n);
  const auto sv = singular_values(out.data(), m, n);  // descending
  const double fro = std::sqrt(dot(x, x));
  int small = 0;
  for (double s : in) small += s / fro < kLow;
  double lo = 10, hi = 0;
  for (size_t i = 0; i + small < sv.size(); ++i) {
    lo = std::min(lo, sv[i]);
    hi = std::max(hi, sv[i]);
  }
  EXPECT_LE(sv.front(), 1.25);
  *n_small = small;
  return {lo, hi};
}

TEST(NewtonSchulz, JordanFiveStepsBandOnRandomMatrices) {
  struct Case {
    int64_t m, n;
    uint64_t seed;
  };
  for (const Case& c : {Case{32, 48, 1}, Case{48, 32, 2}, Case{64, 256, 3}, Case{256, 64, 4},
                        Case{40, 40, 5}, Case{64, 64, 6}, Case{128, 128, 7}}) {
    auto x = gaussian(c.m, c.n, c.seed);
    int small = 0;
    auto [lo, hi] = check_ns_band(x, c.m, c.n, &small);
    EXPECT_GE(lo, 0.6) << c.m << "x" << c.n;
    EXPECT_LE(hi, 1.25) << c.m << "x" << c.n;
    if (c.m != c.n) EXPECT_EQ(small, 0) << "rectangular Gaussians are well conditioned";
    std::printf(
        "  ns5 jordan %lldx%lld gaussian: singular values in [%.4f, %.4f], %d below "
        "sigma/|X|_F = %g\n",
        (long long)c.m, (long long)c.n, lo, hi, small, kLow);
  }
  // Square matrices with a spread spectrum (σ from 1 down to 0.01): all of it lands in the band.
  std::vector<double> s(48);
  for (size_t i = 0; i < s.size(); ++i) s[i] = std::pow(0.01, double(i) / (s.size() - 1));
  auto x = with_spectrum(48, 48, s, 9);
  int small = 0;
  auto [lo, hi] = check_ns_band(x, 48, 48, &small);
  EXPECT_EQ(small, 0);
  EXPECT_GE(lo, 0.6);
  EXPECT_LE(hi, 1.25);
}

TEST(NewtonSchulz, KeepsTheSingularVectors) {
  // NS(X) = U g(Σ) Vᵀ, so NS(X)·polar(X)ᵀ = U g(Σ) Uᵀ is symmetric positive definite.
  const int64_t m = 24, n = 40;
  auto x = gaussian(m, n, 31);
  auto o = dualized("ns5", x, m, n), p = dualized("polar", x, m, n);
  double asym = 0, min_diag = 1;
  for (int64_t a = 0; a < m; ++a)
    for (int64_t b = 0; b < m; ++b) {
      double ab = 0, ba = 0;
      for (int64_t j = 0; j < n; ++j) {
        ab += double(o[a * n + j]) * p[b * n + j];
        ba += double(o[b * n + j]) * p[a * n + j];
      }
      asym = std::max(asym, std::abs(ab - ba));
      if (a == b) min_diag = std::min(min_diag, ab);
    }
  EXPECT_LT(asym, 1e-5);
  EXPECT_GT(min_diag, 0.5);
}

TEST(NewtonSchulz, ConvergentPresetsReachThePolarFactor) {
  std::vector<double> s(32);
  for (size_t i = 0; i < s.size(); ++i) s[i] = 1.0 - 0.9 * double(i) / (s.size() - 1);
  auto x = with_spectrum(32, 48, s, 41);
  auto polar = dualized("polar", x, 32, 48);
  // polar-express converges (its last polynomial fixes 1); cubic converges slowly but surely;
  // jordan does not converge (it oscillates in its band), by design.
  EXPECT_LT(max_abs_diff(dualized("ns:polar-express:10", x, 32, 48), polar), 1e-4);
  EXPECT_LT(max_abs_diff(dualized("ns:cubic:30", x, 32, 48), polar), 1e-4);
  EXPECT_GT(max_abs_diff(dualized("ns:jordan:10", x, 32, 48), polar), 1e-2);
  auto sv = singular_values(dualized("ns:polar-express:5", x, 32, 48).data(), 32, 48);
  EXPECT_GT(sv.back(), 0.7);
  EXPECT_LT(sv.front(), 1.2);
}

// The iteration as it was before it used the symmetry of A = Y Yᵀ: Y = X, or Xᵀ when X is tall,
// normalised; per step A = Y Yᵀ and B = b·A + c·A·A by full GEMMs, Y ← a·Y + B·Y; transposed back.
std::vector<float> ns_full_gemm(const std::string& name, const std::vector<float>& x, int64_t m,
                                int64_t n) {
  const DualizerSpec s = spec(name);
  const bool tr = m > n;
  const int64_t r = tr ? n : m, c = tr ? m : n;
  std::vector<float> y(x.size()), y2(x.size()), a(size_t(r * r)), b(size_t(r * r));
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) y[size_t(tr ? j * m + i : i * n + j)] = x[size_t(i * n + j)];
  const float denom =
      float(std::sqrt(dot(x, x))) * float(ns_norm_factor(s.coeffs)) + float(s.ns_eps);
  for (float& v : y) v /= denom;
  for (int step = 0; step < s.ns_steps; ++step) {
    const NsStep k = ns_step_coeffs(s.coeffs, step);
    gemm<float>(false, true, r, r, c, 1.0f, y.data(), c, y.data(), c, 0.0f, a.data(), r);
    for (size_t i = 0; i < b.size(); ++i) b[i] = float(k.b) * a[i];
    gemm<float>(false, false, r, r, r, float(k.c), a.data(), r, a.data(), r, 1.0f, b.data(), r);
    for (size_t i = 0; i < y.size(); ++i) y2[i] = float(k.a) * y[i];
    gemm<float>(false, false, r, c, r, 1.0f, b.data(), r, y.data(), c, 1.0f, y2.data(), c);
    std::swap(y, y2);
  }
  std::vector<float> out(x.size());
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) out[size_t(i * n + j)] = y[size_t(tr ? j * m + i : i * n + j)];
  return out;
}

TEST(NewtonSchulz, SymmetricProductsMatchTheFullGemmIteration) {
  // dualize() computes A and A² as Gram matrices (?syrk) and works on a tall X itself (A = XᵀX,
  // X ← a·X + X·B) instead of its transpose: the same polynomial in other rounding orders.
  for (const Shape& s : {Shape{96, 160}, Shape{160, 96}, Shape{64, 64}}) {
    const auto x = gaussian(s.m, s.n, 81);
    for (const char* name : {"ns5", "ns:cubic:5", "ns:polar-express:5"}) {
      const double diff =
          max_abs_diff(dualized(name, x, s.m, s.n), ns_full_gemm(name, x, s.m, s.n));
      std::printf("  %s %lldx%lld: max |symmetric - full GEMM| = %.2g\n", name, (long long)s.m,
                  (long long)s.n, diff);
      EXPECT_LT(diff, 1e-5) << name << " " << s.m << "x" << s.n;
    }
  }
}

TEST(Dualizer, StableRankRisesTowardsMinDimAsPGrows) {
  // A low-rank "gradient": rank-4 signal plus a weak full-rank tail. Its stable rank is ~1.
  const int64_t m = 64, n = 96;
  auto x = with_spectrum(m, n, {10.0, 6.0, 3.0, 1.5}, 51);
  auto noise = gaussian(m, n, 52, 0.01);
  for (size_t i = 0; i < x.size(); ++i) x[i] += noise[i];
  const double st_x = stable_rank(singular_values(x.data(), m, n));
  const double ps[] = {1.0, 1.5, 2.0, 3.0, 4.0, 8.0, 16.0, 32.0, 64.0, kInf};
  std::vector<double> st;
  for (double p : ps) {
    char name[48];
    std::snprintf(name, sizeof name, std::isinf(p) ? "schatten-p:inf" : "schatten-p:%g", p);
    st.push_back(stable_rank(singular_values(dualized(name, x, m, n).data(), m, n)));
    std::printf("  p = %-5g stable rank of dualize_p(G) = %.3f\n", p, st.back());
  }
  EXPECT_NEAR(st.front(), 1.0, 1e-6);       // p = 1: rank one
  EXPECT_NEAR(st[2], st_x, 1e-4 * st_x);    // p = 2: the gradient's own direction
  EXPECT_NEAR(st.back(), double(m), 1e-3);  // p = ∞: every direction at 1
  for (size_t i = 1; i < st.size(); ++i) EXPECT_GT(st[i], st[i - 1]) << "p = " << ps[i];
  EXPECT_GT(st[7], 0.5 * m);  // p = 32 is already most of the way (the seed blog's point)
  EXPECT_LT(st_x, 3.0);
}

TEST(Dualizer, ZeroMapsToZeroAndScaleDoesNotMatter) {
  const int64_t m = 12, n = 20;
  std::vector<float> zero(size_t(m * n), 0.0f);
  auto x = gaussian(m, n, 61);
  std::vector<float> x3(x);
  for (float& v : x3) v *= 3.0f;
  for (const char* name : {"ns5", "ns:polar-express:5", "ns:cubic:5", "polar", "schatten-p:3",
                           "schatten-p:1", "sign", "frobenius"}) {
    auto z = dualized(name, zero, m, n);
    for (float v : z) ASSERT_EQ(v, 0.0f) << name;
    EXPECT_LT(max_abs_diff(dualized(name, x3, m, n), dualized(name, x, m, n)), 1e-5) << name;
  }
}

TEST(Dualizer, BatchAndAliasingGiveTheSameResult) {
  const int64_t m = 16, n = 24;
  std::vector<std::vector<float>> xs = {gaussian(m, n, 71), gaussian(m, n, 72), gaussian(m, n, 73)};
  for (const char* name : {"ns5", "polar", "schatten-p:4"}) {
    std::vector<std::vector<float>> outs(xs.size(), std::vector<float>(size_t(m * n)));
    std::vector<const float*> in;
    std::vector<float*> out;
    for (size_t i = 0; i < xs.size(); ++i) {
      in.push_back(xs[i].data());
      out.push_back(outs[i].data());
    }
    DualizerWorkspace ws;
    dualize_batch(spec(name), in, out, m, n, &ws);
    for (size_t i = 0; i < xs.size(); ++i) {
      EXPECT_EQ(outs[i], dualized(name, xs[i], m, n)) << name;
      std::vector<float> alias = xs[i];
      dualize(spec(name), alias.data(), alias.data(), m, n, ws);
      EXPECT_EQ(alias, outs[i]) << name;
    }
  }
}

TEST(Dualizer, NamesParseAndRoundTrip) {
  DualizerSpec ns_default;
  ns_default.coeffs = NsCoeffs::cubic;
  ns_default.ns_steps = 7;
  auto parse = [&](const std::string& s) { return parse_dualizer(s, ns_default, "f.toml", "ctx"); };
  EXPECT_EQ(parse("ns").name(), "ns:cubic:7");
  EXPECT_EQ(parse("ns5").name(), "ns:jordan:5");
  EXPECT_EQ(parse("ns:polar-express").name(), "ns:polar-express:7");
  EXPECT_EQ(parse("ns:jordan:3").name(), "ns:jordan:3");
  EXPECT_EQ(parse("polar").name(), "polar");
  EXPECT_EQ(parse("schatten-p:4").name(), "schatten-p:4");
  EXPECT_EQ(parse("schatten-p:1.5").name(), "schatten-p:1.5");
  EXPECT_EQ(parse("schatten-p:inf").name(), "schatten-p:inf");
  EXPECT_EQ(parse("sign").name(), "sign");
  EXPECT_EQ(parse("frobenius").name(), "frobenius");
  for (const char* s : {"ns", "ns5", "ns:polar-express:9", "polar", "schatten-p:2.5",
                        "schatten-p:inf", "sign", "frobenius"})
    EXPECT_EQ(parse(parse(s).name()), parse(s)) << s;

  struct Bad {
    const char* text;
    const char* expect;
  };
  for (const Bad& b :
       {Bad{"nss", "f.toml: ctx: unknown dualizer 'nss' (expected ns, ns5"},
        Bad{"ns:foo", "unknown Newton-Schulz coefficients 'foo'"},
        Bad{"ns:jordan:0", "steps must be in 1..100"},
        Bad{"ns:jordan:x", "steps must be in 1..100"},
        Bad{"schatten-p:0.5", "p must be a number >= 1, or inf"},
        Bad{"schatten-p:", "p must be a number >= 1"}, Bad{"", "unknown dualizer"}}) {
    try {
      parse(b.text);
      ADD_FAILURE() << "no error for '" << b.text << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(b.expect), std::string::npos) << e.what();
    }
  }
}

TEST(Dualizer, PolarExpressCoefficientsCarryTheSafetyFactor) {
  const NsStep first = ns_step_coeffs(NsCoeffs::polar_express, 0);
  EXPECT_NEAR(first.a, 8.28721201814563 / 1.01, 1e-12);
  EXPECT_NEAR(first.b, -23.595886519098837 / std::pow(1.01, 3), 1e-12);
  EXPECT_NEAR(first.c, 17.300387312530933 / std::pow(1.01, 5), 1e-12);
  for (int i : {7, 8, 20}) {  // the last triple repeats, unscaled
    const NsStep k = ns_step_coeffs(NsCoeffs::polar_express, i);
    EXPECT_EQ(k.a, 1.875);
    EXPECT_EQ(k.b, -1.25);
    EXPECT_EQ(k.c, 0.375);
  }
  EXPECT_EQ(ns_norm_factor(NsCoeffs::polar_express), 1.01);
  EXPECT_EQ(ns_norm_factor(NsCoeffs::jordan), 1.0);
  const NsStep j = ns_step_coeffs(NsCoeffs::jordan, 3);
  EXPECT_EQ(j.a, 3.4445);
  EXPECT_EQ(j.b, -4.7750);
  EXPECT_EQ(j.c, 2.0315);
}

}  // namespace
}  // namespace muongpt
