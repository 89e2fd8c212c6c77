#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "model/gpt.h"
#include "model/ops/attention.h"
#include "model/ops/cross_entropy.h"
#include "model/ops/embedding.h"
#include "model/ops/linear.h"
#include "model/ops/rmsnorm.h"
#include "model/ops/rope.h"

namespace muongpt {

template <typename T>
Gpt<T>::Gpt(const ModelConfig& cfg, int64_t batch, int64_t seq, PlanOnly)
    : cfg_(cfg), B_(batch), T_(seq) {
  check_batch_shape(cfg_, B_, T_);  // before anything is sized by the config
  specs_ = param_specs(cfg_);
  layout(arena_);  // counting: fills mem_ only
}

template <typename T>
Gpt<T>::Gpt(const ModelConfig& cfg, int64_t batch, int64_t seq) : Gpt(cfg, batch, seq, PlanOnly{}) {
  arena_ = Arena(Device::cpu, arena_.used());
  layout(arena_);
  MG_CHECK(mem_.total() == arena_.capacity(), "the memory plan does not add up to the arena");
  rope_tables(rope_cos_, rope_sin_, T_, cfg_.d_head, cfg_.rope_base);
}

template <typename T>
MemoryPlan Gpt<T>::plan(const ModelConfig& cfg, int64_t batch, int64_t seq) {
  return Gpt(cfg, batch, seq, PlanOnly{}).mem_;
}

// Carves every buffer out of the arena. Called twice by plan_arena (count, then allocate), so
// it must not depend on anything but the config and the batch shape.
template <typename T>
void Gpt<T>::layout(Arena& a) {
  const int64_t N = B_ * T_, d = cfg_.d_model, H = cfg_.n_head(), F = cfg_.mlp_width(),
                V = cfg_.vocab_size, L = cfg_.n_layer;
  const bool swiglu = cfg_.swiglu();
  const DType dt = dtype_of<T>();
  auto buf = [&](int64_t n) { return a.alloc(dt, {n}).template data<T>(); };

  size_t mark = a.used();
  auto part = [&](size_t& bytes) {  // the bytes taken since the previous part
    bytes = a.used() - mark;
    mark = a.used();
  };

  const int64_t P = param_count(specs_);
  values_flat_ = a.alloc(dt, {P});
  part(mem_.params);
  grads_flat_ = a.alloc(dt, {P});
  part(mem_.grads);
  values_.clear();
  grads_.clear();
  int64_t offset = 0;
  for (const ParamSpec& s : specs_) {
    auto view = [&](const Tensor& flat) {
      return Tensor(flat.data<T>() ? flat.data<T>() + offset : nullptr, dt, s.shape);
    };
    values_.push_back(view(values_flat_));
    grads_.push_back(view(grads_flat_));
    offset += s.numel();
  }
  w_ = bind_weights(cfg_, specs_, values_flat_.data<T>());
  g_ = bind_weights(cfg_, specs_, grads_flat_.data<T>());

  idx_ = a.alloc(DType::i32, {N}).data<int32_t>();
  targets_ = a.alloc(DType::i32, {N}).data<int32_t>();
  embed_raw_ = buf(N * d);
  embed_rstd_ = buf(N);
  resid_.assign(L + 1, nullptr);
  for (auto& r : resid_) r = buf(N * d);
  acts_.assign(L, {});
  for (LayerActs& x : acts_) {
    x.attn_in = buf(N * d), x.attn_rstd = buf(N);
    x.q = buf(N * d), x.k = buf(N * d), x.v = buf(N * d);
    x.q_rstd = buf(N * H), x.k_rstd = buf(N * H);
    x.q_rot = buf(N * d), x.k_rot = buf(N * d);
    x.probs = buf(B_ * H * T_ * T_);
    x.attn_out = buf(N * d), x.x_mid = buf(N * d);
    x.mlp_in = buf(N * d), x.mlp_rstd = buf(N);
    x.mlp_pre = buf(N * F), x.mlp_act = buf(N * F);
    x.mlp_up = swiglu ? buf(N * F) : nullptr, x.mlp_gate = swiglu ? buf(N * F) : nullptr;
  }
  final_in_ = buf(N * d), final_rstd_ = buf(N);
  logits_ = buf(N * V), lse_ = buf(N);
  rope_cos_ = buf(T_ * cfg_.d_head / 2), rope_sin_ = buf(T_ * cfg_.d_head / 2);
  part(mem_.activations);
  dx_ = buf(N * d), da_ = buf(N * d), dq_ = buf(N * d), dk_ = buf(N * d), dv_ = buf(N * d);
  dy_ = buf(N * d), dh_ = buf(mlp_backward_scratch(cfg_, N)), dscores_ = buf(T_ * T_);
  part(mem_.scratch);
}

template <typename T>
int Gpt<T>::find(std::string_view name) const {
  return find_param(specs_, name);
}

template <typename T>
void Gpt<T>::init_params(uint64_t seed) {
  Rng rng(seed);
  for (size_t i = 0; i < specs_.size(); ++i) init_param(specs_[i], values_[i].data<T>(), rng);
}

template <typename T>
void Gpt<T>::zero_grads() {
  std::memset(grads_flat_.raw(), 0, grads_flat_.nbytes());
}

template <typename T>
double Gpt<T>::grad_norm() const {
  const T* g = grads_flat_.data<T>();
  double ss = 0;
  for (int64_t i = 0; i < grads_flat_.numel(); ++i) ss += double(g[i]) * double(g[i]);
  return std::sqrt(ss);
}

template <typename T>
Tensor Gpt<T>::logits() const {
  return Tensor(logits_, dtype_of<T>(), {B_ * T_, cfg_.vocab_size});
}

template <typename T>
Tensor Gpt<T>::activation(std::string_view kind, int64_t layer) const {
  const int64_t N = B_ * T_;
  const auto [p, width] = find_activation(kind, layer, resid_[0], final_in_, acts_, cfg_);
  return Tensor(const_cast<T*>(p), dtype_of<T>(), {N, width});
}

// The forward of DESIGN.md section 2, one op per line; N = B·T rows, H heads of dh.
template <typename T>
T Gpt<T>::forward(const int32_t* idx, const int32_t* targets) {
  const int64_t N = B_ * T_, d = cfg_.d_model, H = cfg_.n_head(), dh = cfg_.d_head,
                V = cfg_.vocab_size, L = cfg_.n_layer;
  const T eps = T(cfg_.norm_eps), scale = T(cfg_.attention_scale()), cap = T(cfg_.softcap);
  check_token_ids(idx, targets, N, V);
  std::copy(idx, idx + N, idx_);
  std::copy(targets, targets + N, targets_);

  lap(clock_, Op::embedding);
  embedding_forward(embed_raw_, w_.embed, idx_, N, d);  // [N, d]
  lap(clock_, Op::norm);
  rmsnorm_forward(resid_[0], embed_rstd_, embed_raw_, N, d, eps);  // x0 [N, d]
  for (int64_t l = 0; l < L; ++l) {
    const Block& w = w_.blocks[l];
    LayerActs& a = acts_[l];
    rmsnorm_forward(a.attn_in, a.attn_rstd, resid_[l], w.attn_norm, N, d, eps);  // [N, d]
    lap(clock_, Op::qkv);
    linear(a.q, a.attn_in, w.wq, N, d, d);  // [N, d]
    linear(a.k, a.attn_in, w.wk, N, d, d);  // [N, d]
    linear(a.v, a.attn_in, w.wv, N, d, d);  // [N, d]
    lap(clock_, Op::qk_norm_rope);
    rmsnorm_forward(a.q_rot, a.q_rstd, a.q, N * H, dh, eps);     // QK-norm [N·H, dh]
    rmsnorm_forward(a.k_rot, a.k_rstd, a.k, N * H, dh, eps);     // [N·H, dh]
    rope_forward(a.q_rot, rope_cos_, rope_sin_, B_, T_, H, dh);  // [B, T, H, dh]
    rope_forward(a.k_rot, rope_cos_, rope_sin_, B_, T_, H, dh);  // [B, T, H, dh]
    lap(clock_, Op::attention);
    attention_forward(a.attn_out, a.probs, a.q_rot, a.k_rot, a.v, B_, T_, H, dh, scale);  // [N, d]
    lap(clock_, Op::attn_out);
    linear_add(a.x_mid, resid_[l], a.attn_out, w.wo, N, d, d);         // x + y·woᵀ [N, d]
    mlp_forward(resid_[l + 1], a.x_mid, a.mlp(), w, cfg_, N, clock_);  // x + MLP(x) [N, d]
    lap(clock_, Op::norm);
  }
  rmsnorm_forward(final_in_, final_rstd_, resid_[L], w_.final_norm, N, d, eps);  // [N, d]
  lap(clock_, Op::head);
  linear(logits_, final_in_, w_.head, N, d, V);  // [N, V]: the first V rows of the head
  lap(clock_, Op::loss);
  return softcap_cross_entropy_forward(logits_, lse_, targets_, N, V, cap);
}

// The forward's ops in reverse; dx_ carries d(residual stream) down the blocks.
template <typename T>
void Gpt<T>::backward(T loss_scale) {
  const int64_t N = B_ * T_, d = cfg_.d_model, H = cfg_.n_head(), dh = cfg_.d_head,
                V = cfg_.vocab_size, L = cfg_.n_layer;
  const T scale = T(cfg_.attention_scale()), cap = T(cfg_.softcap);

  lap(clock_, Op::loss);
  softcap_cross_entropy_backward(logits_, lse_, targets_, N, V, cap, loss_scale);  // → dlogits
  lap(clock_, Op::head);
  linear_backward(da_, g_.head, logits_, final_in_, w_.head, N, d, V, false);
  lap(clock_, Op::norm);
  rmsnorm_backward(dx_, g_.final_norm, da_, resid_[L], w_.final_norm, final_rstd_, N, d, false);
  for (int64_t l = L - 1; l >= 0; --l) {  // dx_ holds d(block output) = d(resid_[l + 1])
    const Block& w = w_.blocks[l];
    const Block& g = g_.blocks[l];
    const LayerActs& a = acts_[l];
    mlp_backward(dx_, g, a.x_mid, a.mlp(), w, cfg_, N, dh_, da_, clock_);  // dx_ = d(x_mid)
    lap(clock_, Op::attn_out);
    linear_backward(dy_, g.wo, dx_, a.attn_out, w.wo, N, d, d, false);  // d(attn_out) [N, d]
    lap(clock_, Op::attention);
    attention_backward(dq_, dk_, dv_, dscores_, dy_, a.probs, a.q_rot, a.k_rot, a.v, B_, T_, H, dh,
                       scale);
    lap(clock_, Op::qk_norm_rope);
    rope_backward(dq_, rope_cos_, rope_sin_, B_, T_, H, dh);
    rope_backward(dk_, rope_cos_, rope_sin_, B_, T_, H, dh);
    rmsnorm_backward(dq_, dq_, a.q, a.q_rstd, N * H, dh);  // QK-norm, in place
    rmsnorm_backward(dk_, dk_, a.k, a.k_rstd, N * H, dh);
    lap(clock_, Op::qkv);
    linear_backward(da_, g.wq, dq_, a.attn_in, w.wq, N, d, d, false);  // d(attn_in) [N, d]
    linear_backward(da_, g.wk, dk_, a.attn_in, w.wk, N, d, d, true);   // (+=)
    linear_backward(da_, g.wv, dv_, a.attn_in, w.wv, N, d, d, true);   // (+=)
    lap(clock_, Op::norm);
    rmsnorm_backward(dx_, g.attn_norm, da_, resid_[l], w.attn_norm, a.attn_rstd, N, d, true);
  }
  rmsnorm_backward(dx_, dx_, embed_raw_, embed_rstd_, N, d);  // d(embedding rows), in place
  lap(clock_, Op::embedding);
  embedding_backward(g_.embed, dx_, idx_, N, d);
}

template class Gpt<float>;
template class Gpt<double>;

std::vector<ParamSlot> param_slots(const Gpt<float>& model) {
  std::vector<ParamSlot> slots;
  for (size_t i = 0; i < model.specs().size(); ++i) {
    const ParamSpec& s = model.specs()[i];
    slots.push_back(
        {s.name, s.shape, model.param(i).data<float>(), model.grad(i).data<float>(), Device::cpu});
  }
  return slots;
}

}  // namespace muongpt
