#include "optim/dualizer.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/error.h"
#include "core/gemm.h"
#include "core/linalg.h"
#include "optim/config.h"
#include "optim/dualizer_math.h"

namespace muongpt {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Polar Express (Amsel, Persson, Musco, Gower 2025), degree 5: the optimal per-step triples for
// an initial lower spectral bound of 1e-3. The first seven are divided by the safety factor 1.01
// (a/1.01, b/1.01³, c/1.01⁵) and the input is normalised by 1.01·‖X‖_F; from step 8 on the last
// triple repeats (it fixes σ = 1).
constexpr NsStep kPolarExpress[] = {
    {8.28721201814563, -23.595886519098837, 17.300387312530933},
    {4.107059111542203, -2.9478499167379106, 0.5448431082926601},
    {3.9486908534822946, -2.908902115962949, 0.5518191394370137},
    {3.3184196573706015, -2.488488024314874, 0.51004894012372},
    {2.300652019954817, -1.6689039845747493, 0.4188073119525673},
    {1.891301407787398, -1.2679958271945868, 0.37680408948524835},
    {1.8750014808534479, -1.2500016453999487, 0.3750001645474248},
    {1.875, -1.25, 0.375},
};
constexpr int kPolarExpressSteps = sizeof(kPolarExpress) / sizeof(kPolarExpress[0]);
constexpr double kPolarExpressSafety = 1.01;

const char* kDualizerHelp =
    "expected ns, ns5, ns:<jordan|cubic|polar-express>[:steps], polar, schatten-p:<p>, sign or "
    "frobenius";

template <typename T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

double frobenius_norm(const float* X, int64_t count) {
  double s = 0;
  for (int64_t i = 0; i < count; ++i) s += double(X[i]) * double(X[i]);
  return std::sqrt(s);
}

// Newton–Schulz in float32 on Y = X / (c·‖X‖_F + eps) [m, n] with the smaller Gram matrix:
// A = Y Yᵀ and Y ← a·Y + B·Y when m ≤ n, A = YᵀY and Y ← a·Y + Y·B when m > n (the same
// polynomial, since (Y Yᵀ)ᵏ Y = Y (YᵀY)ᵏ), so nothing is transposed. A and A² = A Aᵀ (A is
// symmetric) are Gram matrices: ?syrk, half the work of a GEMM.
void newton_schulz(const DualizerSpec& spec, const float* X, float* out, int64_t m, int64_t n,
                   DualizerWorkspace& ws) {
  const bool tall = m > n;
  const int64_t r = tall ? n : m;  // A, B: [r, r]
  float* Y = grow(ws.f0, size_t(m * n));
  float* Y2 = grow(ws.f1, size_t(m * n));
  float* A = grow(ws.f2, size_t(r * r));
  float* B = grow(ws.f3, size_t(r * r));
  const float denom = ns_denominator(frobenius_norm(X, m * n), float(ns_norm_factor(spec.coeffs)),
                                     float(spec.ns_eps));
  for (int64_t i = 0; i < m * n; ++i) Y[i] = X[i] / denom;

  for (int s = 0; s < spec.ns_steps; ++s) {
    const NsStep k = ns_step_coeffs(spec.coeffs, s);
    const float a = float(k.a), b = float(k.b), cc = float(k.c);
    if (tall)
      gram(m, n, 1.0f, Y, n, 0.0f, A, n);  // A = YᵀY   [n, n]
    else
      gram_rows(m, n, 1.0f, Y, n, 0.0f, A, m);  // A = Y Yᵀ   [m, m]
    for (int64_t i = 0; i < r * r; ++i) B[i] = b * A[i];
    if (cc != 0.0f) gram(r, r, cc, A, r, 1.0f, B, r);  // B += c·AᵀA = c·A²
    for (int64_t i = 0; i < m * n; ++i) Y2[i] = a * Y[i];
    if (tall)
      gemm<float>(false, false, m, n, n, 1.0f, Y, n, B, n, 1.0f, Y2, n);  // Y2 = a·Y + Y·B
    else
      gemm<float>(false, false, m, n, m, 1.0f, B, m, Y, n, 1.0f, Y2, n);  // Y2 = a·Y + B·Y
    std::swap(Y, Y2);
  }
  std::copy(Y, Y + m * n, out);
}

// T = U diag(h(σ)/σ) Uᵀ X (m ≤ n) or X V diag(h(σ)/σ) Vᵀ (m > n), from the smaller Gram matrix.
void exact_dualizer(const DualizerSpec& spec, const float* X, float* out, int64_t m, int64_t n,
                    DualizerWorkspace& ws) {
  const bool left = m <= n;
  const int64_t k = left ? m : n;
  double* Xd = grow(ws.d0, size_t(m * n));
  double* U = grow(ws.d1, size_t(k * k));
  double* w = grow(ws.d2, size_t(2 * k));
  double* coef = w + k;
  double* UD = grow(ws.d3, size_t(k * k));
  double* W = grow(ws.d4, size_t(k * k));
  std::copy(X, X + m * n, Xd);
  if (left)
    gemm<double>(false, true, m, m, n, 1.0, Xd, n, Xd, n, 0.0, U, m);  // X Xᵀ  [m, m]
  else
    gemm<double>(true, false, n, n, m, 1.0, Xd, n, Xd, n, 0.0, U, n);  // XᵀX  [n, n]
  sym_eig(k, U, w);  // ascending; eigenvectors in the columns of U

  const double lam_max = exact_lam_max(w[k - 1]);
  if (!(lam_max > 0)) {  // zero matrix
    std::fill(out, out + m * n, 0.0f);
    return;
  }
  const double cutoff = exact_cutoff(lam_max, k);
  const double s_max = std::sqrt(lam_max);
  std::vector<double>& sig = ws.d5;
  grow(sig, size_t(k));
  for (int64_t i = 0; i < k; ++i) sig[i] = exact_sigma(w[i], cutoff);

  const double p = spec.kind == DualizerKind::polar ? kInf : spec.p;
  if (std::isinf(p)) {  // q = 1: every nonzero σ ↦ 1
    for (int64_t i = 0; i < k; ++i) coef[i] = exact_coef_polar(sig[i]);
  } else if (p == 1.0) {  // q = ∞: the top singular value(s) share the unit nuclear norm
    int64_t top = 0;
    for (int64_t i = 0; i < k; ++i) top += exact_is_top(sig[i], s_max);
    for (int64_t i = 0; i < k; ++i) coef[i] = exact_coef_nuclear(sig[i], s_max, top);
  } else {
    // σᵢ^(q−1) / ‖σ‖_q^(q−1) = rᵢ^(q−1) / S^((q−1)/q) with rᵢ = σᵢ/σ_max and S = Σ rⱼ^q, which
    // neither overflows nor underflows harmfully for any q.
    const double q = p / (p - 1);
    double S = 0;
    for (int64_t i = 0; i < k; ++i) S += schatten_term(sig[i], s_max, q);
    const double norm = schatten_norm(S, q);
    for (int64_t i = 0; i < k; ++i) coef[i] = exact_coef_schatten(sig[i], s_max, q, norm);
  }

  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < k; ++j) UD[i * k + j] = U[i * k + j] * coef[j];
  gemm<double>(false, true, k, k, k, 1.0, UD, k, U, k, 0.0, W, k);  // W = U diag(coef) Uᵀ
  double* T = grow(ws.d6, size_t(m * n));
  if (left)
    gemm<double>(false, false, m, n, m, 1.0, W, m, Xd, n, 0.0, T, n);  // W X   [m, n]
  else
    gemm<double>(false, false, m, n, n, 1.0, Xd, n, W, n, 0.0, T, n);  // X W   [m, n]
  for (int64_t i = 0; i < m * n; ++i) out[i] = float(T[i]);
}

}  // namespace

std::string_view ns_coeffs_name(NsCoeffs c) {
  switch (c) {
    case NsCoeffs::jordan:
      return "jordan";
    case NsCoeffs::cubic:
      return "cubic";
    case NsCoeffs::polar_express:
      return "polar-express";
  }
  return "?";
}

NsCoeffs parse_ns_coeffs(std::string_view text, const std::string& file,
                         const std::string& context) {
  if (text == "jordan") return NsCoeffs::jordan;
  if (text == "cubic") return NsCoeffs::cubic;
  if (text == "polar-express") return NsCoeffs::polar_express;
  fail(file, context, ": unknown Newton-Schulz coefficients '", text,
       "' (expected jordan, cubic or polar-express)");
}

NsStep ns_step_coeffs(NsCoeffs c, int i) {
  switch (c) {
    case NsCoeffs::jordan:
      return {3.4445, -4.7750, 2.0315};
    case NsCoeffs::cubic:
      return {1.5, -0.5, 0.0};
    case NsCoeffs::polar_express: {
      if (i >= kPolarExpressSteps - 1) return kPolarExpress[kPolarExpressSteps - 1];
      const NsStep k = kPolarExpress[i];
      const double s = kPolarExpressSafety;
      return {k.a / s, k.b / (s * s * s), k.c / (s * s * s * s * s)};
    }
  }
  return {0, 0, 0};
}

double ns_norm_factor(NsCoeffs c) {
  return c == NsCoeffs::polar_express ? kPolarExpressSafety : 1.0;
}

std::string DualizerSpec::name() const {
  switch (kind) {
    case DualizerKind::newton_schulz:
      return "ns:" + std::string(ns_coeffs_name(coeffs)) + ":" + std::to_string(ns_steps);
    case DualizerKind::polar:
      return "polar";
    case DualizerKind::schatten_p: {
      if (std::isinf(p)) return "schatten-p:inf";
      char buf[64];
      auto res = std::to_chars(buf, buf + sizeof buf, p);
      return "schatten-p:" + std::string(buf, res.ptr);
    }
    case DualizerKind::sign:
      return "sign";
    case DualizerKind::frobenius:
      return "frobenius";
  }
  return "?";
}

DualizerSpec parse_dualizer(std::string_view text, const DualizerSpec& ns_default,
                            const std::string& file, const std::string& context) {
  DualizerSpec s;
  s.ns_eps = ns_default.ns_eps;
  auto unknown = [&]() -> DualizerSpec {
    fail(file, context, ": unknown dualizer '", text, "' (", kDualizerHelp, ")");
  };
  if (text == "ns") {
    s.coeffs = ns_default.coeffs;
    s.ns_steps = ns_default.ns_steps;
    return s;
  }
  if (text == "ns5") return s;  // jordan, 5 steps
  if (text.starts_with("ns:")) {
    std::string_view rest = text.substr(3);
    const size_t colon = rest.find(':');
    s.coeffs = parse_ns_coeffs(rest.substr(0, colon), file, context);
    s.ns_steps = ns_default.ns_steps;
    if (colon != std::string_view::npos) {
      std::string_view steps = rest.substr(colon + 1);
      int v = 0;
      auto res = std::from_chars(steps.data(), steps.data() + steps.size(), v);
      if (res.ec != std::errc() || res.ptr != steps.data() + steps.size() || v < 1 || v > 100)
        fail(file, context, ": dualizer '", text, "': Newton-Schulz steps must be in 1..100");
      s.ns_steps = v;
    }
    return s;
  }
  if (text == "polar") {
    s.kind = DualizerKind::polar;
    return s;
  }
  if (text == "sign") {
    s.kind = DualizerKind::sign;
    return s;
  }
  if (text == "frobenius") {
    s.kind = DualizerKind::frobenius;
    return s;
  }
  if (text.starts_with("schatten-p:")) {
    s.kind = DualizerKind::schatten_p;
    std::string_view num = text.substr(11);
    if (num == "inf") {
      s.p = kInf;
      return s;
    }
    double p = 0;
    auto res = std::from_chars(num.data(), num.data() + num.size(), p);
    if (res.ec != std::errc() || res.ptr != num.data() + num.size() || !(p >= 1) ||
        !std::isfinite(p))
      fail(file, context, ": dualizer '", text, "': p must be a number >= 1, or inf");
    s.p = p;
    return s;
  }
  return unknown();
}

void dualize(const DualizerSpec& spec, const float* X, float* out, int64_t m, int64_t n,
             DualizerWorkspace& ws) {
  MG_CHECK(m > 0 && n > 0, "dualize of a ", m, "x", n, " matrix");
  const int64_t count = m * n;
  switch (spec.kind) {
    case DualizerKind::newton_schulz:
      newton_schulz(spec, X, out, m, n, ws);
      return;
    case DualizerKind::polar:
    case DualizerKind::schatten_p:
      exact_dualizer(spec, X, out, m, n, ws);
      return;
    case DualizerKind::sign:
      for (int64_t i = 0; i < count; ++i) out[i] = sign_element(X[i]);
      return;
    case DualizerKind::frobenius: {
      const double norm = frobenius_norm(X, count);
      for (int64_t i = 0; i < count; ++i) out[i] = frobenius_element(X[i], norm);
      return;
    }
  }
}

void dualize(const DualizerSpec& spec, const float* X, float* out, int64_t m, int64_t n,
             DualizerWorkspace* ws) {
  if (ws) return dualize(spec, X, out, m, n, *ws);
  DualizerWorkspace local;
  dualize(spec, X, out, m, n, local);
}

void dualize_batch(const DualizerSpec& spec, const std::vector<const float*>& X,
                   const std::vector<float*>& out, int64_t m, int64_t n, DualizerWorkspace* ws) {
  MG_CHECK(X.size() == out.size(), X.size(), " inputs, ", out.size(), " outputs");
  DualizerWorkspace local;
  DualizerWorkspace& w = ws ? *ws : local;
  for (size_t i = 0; i < X.size(); ++i) dualize(spec, X[i], out[i], m, n, w);
}

std::vector<double> singular_values(const float* X, int64_t m, int64_t n) {
  const bool left = m <= n;
  const int64_t k = left ? m : n;
  std::vector<double> Xd(X, X + m * n), G(static_cast<size_t>(k * k)), w(static_cast<size_t>(k));
  if (left)
    gemm<double>(false, true, m, m, n, 1.0, Xd.data(), n, Xd.data(), n, 0.0, G.data(), m);
  else
    gemm<double>(true, false, n, n, m, 1.0, Xd.data(), n, Xd.data(), n, 0.0, G.data(), n);
  sym_eigvals(k, G.data(), w.data());
  std::vector<double> s(static_cast<size_t>(k));
  for (int64_t i = 0; i < k; ++i) s[size_t(i)] = std::sqrt(std::max(w[size_t(k - 1 - i)], 0.0));
  return s;
}

}  // namespace muongpt
