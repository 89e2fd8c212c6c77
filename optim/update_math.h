// Per-element update math of AdamW and Muon, shared by the CPU loops and the CUDA kernels
// (optim/optimizer_cuda.cu, compiled with -fmad=false so that both round the same way).
// The order of float operations follows torch.optim.AdamW's single-tensor path and the reference
// Muon in tools/reference/muon.py, so that the parity fixtures agree to the last bit or two.
#pragma once

#include <cmath>

#include "core/hd.h"

namespace muongpt {

// Step constants of AdamW, computed once per step in double and rounded to float.
struct AdamWConsts {
  float one_minus_beta1;  // 1 − β1
  float beta2;
  float one_minus_beta2;  // 1 − β2
  float decay;            // 1 − lr·wd (decoupled weight decay)
  float step_size;        // lr / (1 − β1^t)
  float sqrt_bc2;         // √(1 − β2^t)
  float eps;
};

// p ← p·(1 − lr·wd);  m ← m + (1−β1)(g − m);  v ← β2·v + (1−β2)·g²;
// p ← p − lr/(1−β1^t) · m / (√v / √(1−β2^t) + ε)
MG_HD void adamw_element(float& p, float g, float& m, float& v, const AdamWConsts& k) {
  p = p * k.decay;
  m = m + k.one_minus_beta1 * (g - m);
  v = v * k.beta2 + k.one_minus_beta2 * g * g;
  const float denom = std::sqrt(v) / k.sqrt_bc2 + k.eps;
  p = p + (-k.step_size) * (m / denom);
}

// Muon's momentum for one element; returns u, the input of the dualizer.
//   ema:     buf ← μ·buf + (1−μ)·g;   u = nesterov ? (1−μ)·g + μ·buf : buf
//   classic: buf ← μ·buf + g;         u = nesterov ? g + μ·buf : buf
MG_HD float muon_momentum_element(float g, float& buf, float mu, float one_minus_mu, bool ema,
                                  bool nesterov) {
  if (ema) {
    buf = buf * mu + one_minus_mu * g;
    return nesterov ? g * one_minus_mu + mu * buf : buf;
  }
  buf = buf * mu + g;
  return nesterov ? g + mu * buf : buf;
}

// Muon's step constants for lr = base lr · schedule multiplier, computed in double and rounded to
// float: decay = 1 − lr·wd, step = lr·scale.
struct MuonConsts {
  float decay;
  float step;
};
MG_HD MuonConsts muon_consts(double lr, double wd, double scale) {
  return {float(1.0 - lr * wd), float(lr * scale)};
}

// W ← W·(1 − lr·wd) − lr·scale·O, with decay = 1 − lr·wd and step = lr·scale.
MG_HD float muon_apply_element(float w, float o, float decay, float step) {
  return w * decay + (-step) * o;
}

}  // namespace muongpt
