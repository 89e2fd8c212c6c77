#include "model/mlp.h"

#include "model/ops/linear.h"
#include "model/ops/relu2.h"
#include "model/ops/rmsnorm.h"
#include "model/ops/swiglu.h"

namespace muongpt {

template <typename T>
void mlp_forward(T* y, const T* x, const MlpActs<T>& a, const BlockWeights<T>& w,
                 const ModelConfig& cfg, int64_t N, OpClock* clock) {
  const int64_t d = cfg.d_model, F = cfg.mlp_width();
  lap(clock, Op::norm);
  rmsnorm_forward(a.in, a.rstd, x, w.mlp_norm, N, d, T(cfg.norm_eps));  // [N, d]
  lap(clock, Op::mlp_in);
  linear(a.pre, a.in, w.w1, N, d, F);                   // h [N, F]
  if (cfg.swiglu()) linear(a.up, a.in, w.w3, N, d, F);  // u [N, F]
  lap(clock, Op::mlp_act);
  if (cfg.swiglu())
    swiglu_forward(a.act, a.gate, a.pre, a.up, N * F);  // silu(h)·u [N, F]
  else
    relu2_forward(a.act, a.pre, N * F);  // relu(h)² [N, F]
  lap(clock, Op::mlp_out);
  linear_add(y, x, a.act, w.w2, N, F, d);  // x + b·w2ᵀ [N, d]
}

template <typename T>
void mlp_backward(T* dx, const BlockWeights<T>& g, const T* x, const MlpActs<T>& a,
                  const BlockWeights<T>& w, const ModelConfig& cfg, int64_t N, T* dh, T* da,
                  OpClock* clock) {
  const int64_t d = cfg.d_model, F = cfg.mlp_width();
  T* du = dh + N * F;  // swiglu: d(u) beside d(h)
  lap(clock, Op::mlp_out);
  linear_backward(dh, g.w2, dx, a.act, w.w2, N, F, d, false);  // d(b) [N, F]
  lap(clock, Op::mlp_act);
  if (cfg.swiglu())
    swiglu_backward(dh, du, dh, a.pre, a.up, N * F);  // d(h), d(u) [N, F] each
  else
    relu2_backward(dh, dh, a.pre, N * F);  // d(h)
  lap(clock, Op::mlp_in);
  linear_backward(da, g.w1, dh, a.in, w.w1, N, d, F, false);                   // d(m) [N, d]
  if (cfg.swiglu()) linear_backward(da, g.w3, du, a.in, w.w3, N, d, F, true);  // (+=)
  lap(clock, Op::norm);
  rmsnorm_backward(dx, g.mlp_norm, da, x, w.mlp_norm, a.rstd, N, d, true);  // += d(x)
}

#define MG_INSTANTIATE(T)                                                                    \
  template void mlp_forward<T>(T*, const T*, const MlpActs<T>&, const BlockWeights<T>&,      \
                               const ModelConfig&, int64_t, OpClock*);                       \
  template void mlp_backward<T>(T*, const BlockWeights<T>&, const T*, const MlpActs<T>&,     \
                                const BlockWeights<T>&, const ModelConfig&, int64_t, T*, T*, \
                                OpClock*);
MG_INSTANTIATE(float)
MG_INSTANTIATE(double)

}  // namespace muongpt
