// The causal attention reference for the GPU and emulated attention tests: the CPU attention ops
// (model/ops/attention.h) in double on [B, T, H, dh] inputs, plus the per-element magnitudes of
// the bf16 error bound (docs/numerics.md, "GPU tolerances (bf16)" and "Flash attention").
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "model/ops/attention.h"

namespace muongpt::testing {

struct HeadShape {
  int64_t B, T, H, dh;
};
inline std::string str(const HeadShape& s) {
  return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " H=" + std::to_string(s.H) +
         " dh=" + std::to_string(s.dh);
}

// x in [B, T, H, dh] → [B, H, T, dh] (to_heads_major), or back (!to_heads_major).
template <typename V>
V heads_layout(const V& x, const HeadShape& s, bool to_heads_major) {
  V y(x.size());
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.T; ++t)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t c = 0; c < s.dh; ++c) {
          const size_t token_major = size_t(((b * s.T + t) * s.H + h) * s.dh + c),
                       head_major = size_t(((b * s.H + h) * s.T + t) * s.dh + c);
          if (to_heads_major)
            y[head_major] = x[token_major];
          else
            y[token_major] = x[head_major];
        }
  return y;
}

// Per head, from the reference P and dP = dy vᵀ, D_t = Σ_u P dP, A_t = Σ_u P |dP|,
// M = 2 P |dP − D| + P A_t:
//   y: P|v|     dv: Pᵀ|dy|     dq: scale · M|k|     dk: scale · Mᵀ|q|
struct AttnRef {
  std::vector<double> y, probs, dq, dk, dv;  // y, dq, dk, dv: [B, T, H, dh]; probs: [B, H, T, T]
  std::vector<double> mag_y, mag_dq, mag_dk, mag_dv;  // [B, T, H, dh]
  std::vector<double> lse2;  // [B, H, T] log2 Σ_u exp(scale · q_t · k_u), u ≤ t
};

// q, k, v, dy: [B, T, H, dh] (values exactly representable in the storage type).
inline AttnRef attention_reference(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, const std::vector<float>& dy,
                                   const HeadShape& s, double scale) {
  using Vec = std::vector<double>;
  const int64_t B = s.B, T_ = s.T, H = s.H, dh = s.dh;
  const size_t size = size_t(B * T_ * H * dh);
  AttnRef r;
  const Vec qd(q.begin(), q.end()), kd(k.begin(), k.end()), vd(v.begin(), v.end()),
      dyd(dy.begin(), dy.end());
  r.y.resize(size), r.dq.resize(size), r.dk.resize(size), r.dv.resize(size);
  r.probs.resize(size_t(B * H * T_ * T_));
  attention_forward(r.y.data(), r.probs.data(), qd.data(), kd.data(), vd.data(), B, T_, H, dh,
                    scale);
  Vec scratch(size_t(T_ * T_));
  attention_backward(r.dq.data(), r.dk.data(), r.dv.data(), scratch.data(), dyd.data(),
                     r.probs.data(), qd.data(), kd.data(), vd.data(), B, T_, H, dh, scale);
  r.mag_y.assign(size, 0.0), r.mag_dq.assign(size, 0.0);
  r.mag_dk.assign(size, 0.0), r.mag_dv.assign(size, 0.0);
  r.lse2.assign(size_t(B * H * T_), 0.0);
  auto at = [&](int64_t b, int64_t t, int64_t h, int64_t c) {
    return size_t(((b * T_ + t) * H + h) * dh + c);
  };
  Vec M(size_t(T_ * T_));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const double* P = r.probs.data() + (b * H + h) * T_ * T_;
      for (int64_t t = 0; t < T_; ++t) {
        Vec dp(size_t(t + 1));
        double D = 0, A = 0, sum = 0;
        for (int64_t u = 0; u <= t; ++u) {
          double s_ = 0, qk = 0;
          for (int64_t c = 0; c < dh; ++c) {
            s_ += dyd[at(b, t, h, c)] * vd[at(b, u, h, c)];
            qk += qd[at(b, t, h, c)] * kd[at(b, u, h, c)];
          }
          dp[size_t(u)] = s_;
          D += P[t * T_ + u] * s_;
          A += P[t * T_ + u] * std::abs(s_);
          sum += std::exp(scale * qk);
        }
        r.lse2[size_t((b * H + h) * T_ + t)] = std::log2(sum);
        for (int64_t u = 0; u <= t; ++u)
          M[size_t(t * T_ + u)] =
              2 * P[t * T_ + u] * std::abs(dp[size_t(u)] - D) + P[t * T_ + u] * A;
      }
      for (int64_t t = 0; t < T_; ++t) {
        for (int64_t u = 0; u <= t; ++u) {
          const double p = P[t * T_ + u], m = M[size_t(t * T_ + u)];
          for (int64_t c = 0; c < dh; ++c) {
            r.mag_y[at(b, t, h, c)] += p * std::abs(vd[at(b, u, h, c)]);
            r.mag_dv[at(b, u, h, c)] += p * std::abs(dyd[at(b, t, h, c)]);
            r.mag_dq[at(b, t, h, c)] += scale * m * std::abs(kd[at(b, u, h, c)]);
            r.mag_dk[at(b, u, h, c)] += scale * m * std::abs(qd[at(b, t, h, c)]);
          }
        }
      }
    }
  }
  return r;
}

// Flash attention's extra term (docs/numerics.md, "Flash attention"): the backward's row sums
// D = Σ_c dy·y use the stored y, so dS carries u·P·E_t more, E_t = Σ_c |dy|(|y| + mag_y): added
// to mag_dq (scale·Σ_u P E|k|) and mag_dk (scale·Σ_t P E|q|).
inline void add_flash_magnitudes(AttnRef& r, const std::vector<float>& q,
                                 const std::vector<float>& k, const std::vector<float>& dy,
                                 const HeadShape& s, double scale) {
  const int64_t B = s.B, T_ = s.T, H = s.H, dh = s.dh;
  auto at = [&](int64_t b, int64_t t, int64_t h, int64_t c) {
    return size_t(((b * T_ + t) * H + h) * dh + c);
  };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const double* P = r.probs.data() + (b * H + h) * T_ * T_;
      for (int64_t t = 0; t < T_; ++t) {
        double e = 0;
        for (int64_t c = 0; c < dh; ++c)
          e += std::abs(double(dy[at(b, t, h, c)])) *
               (std::abs(r.y[at(b, t, h, c)]) + r.mag_y[at(b, t, h, c)]);
        for (int64_t u = 0; u <= t; ++u) {
          const double w = scale * P[t * T_ + u] * e;
          for (int64_t c = 0; c < dh; ++c) {
            r.mag_dq[at(b, t, h, c)] += w * std::abs(k[at(b, u, h, c)]);
            r.mag_dk[at(b, u, h, c)] += w * std::abs(q[at(b, t, h, c)]);
          }
        }
      }
    }
}

}  // namespace muongpt::testing
