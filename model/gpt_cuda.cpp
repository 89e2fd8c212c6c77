// The GPU model (model/gpt_cuda.h): the GPT's forward and backward on the GPU, step for step the
// same computation as Gpt<T> (model/gpt_cpu.cpp), assembled from the op launchers of
// model/ops/*.cu and the cuBLASLt GEMMs of core/gemm_cuda.h. Host code only (every kernel is in
// model/ops/*.cu, core/gemm_cuda.cu, core/cuda_util.cu), built in CUDA builds. GptCuda<T> is a
// Model (model/model.h) templated on the storage type T: float for Precision::fp32,
// __nv_bfloat16 for Precision::bf16 (mixed precision: fp32 masters and gradients, a bf16
// working copy of the weights, bf16 activations, fp32 accumulation and per-row statistics).
//
// Memory: one device arena, planned from the config at construction, holds the fp32 masters and
// gradients (each one flat buffer in param_specs() order), the working copy (rewritten by the
// CUDA optimizer after each update), every activation the backward needs, and scratch. Nothing is
// allocated on the device after construction (the constructor also makes the first cuBLASLt
// call and the first gradient reduction, which allocate their per-stream workspaces).
//
// Differences from the CPU model's structure, all numerically neutral or better:
//   - q, k, v come from one batched GEMM (wq, wk, wv are adjacent in the flat weights, so they
//     are three [d, d] matrices d·d apart) into one [3, N, d] buffer; their weight gradients are
//     one batched GEMM too; the input gradient dq·wq + dk·wk + dv·wv is summed in fp32 (three
//     GEMMs into an fp32 buffer, rounded to T once). SwiGLU's two branches are done the same way:
//     w1 and w3 are adjacent [F, d] blocks (params.cpp orders them so), h and u one [2, N, F]
//     buffer, and d(mlp_in) = dh·w1 + du·w3 is summed in fp32.
//   - QK-norm + RoPE is one fused kernel that writes the heads layout [B, H, T, dh]. There,
//     straightforward attention makes every attention product one strided batched GEMM over B·H
//     heads; v is moved to that layout by heads_split (forward, and again in the backward instead
//     of keeping a copy), the attention output back by heads_merge. Flash attention reads v and
//     writes the output in the token layout itself, and keeps only the rows' log-sum-exp.
//   - Residual adds are GEMM epilogues: x_mid = x + y·woᵀ is "copy x, then GEMM with beta = 1",
//     so the sum is formed in fp32 and rounded once.
//   - The head GEMM covers all Vp rows of head.weight (a multiple of 128: friendlier tiles); the
//     padded columns of the logits are never read by the loss, and its backward writes 0 there,
//     so the padded rows of head.weight get exactly zero gradient, as on the CPU.
//   - Weight gradients are fp32 GEMM outputs with beta = 1: C ← C + dyᵀ·x, accumulating across
//     micro-batches in fp32 (A and B are the T-stored activations, products accumulated in fp32).
#ifdef MUONGPT_HAVE_CUDA

#include "model/gpt_cuda.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "core/arena.h"
#include "core/cuda_check.h"
#include "core/cuda_util.h"
#include "core/error.h"
#include "core/gemm_cuda.h"
#include "model/gpt.h"
#include "model/ops/attention.h"
#include "model/ops/cross_entropy.h"
#include "model/ops/embedding.h"
#include "model/ops/flash_attention.h"
#include "model/ops/qk_norm_rope.h"
#include "model/ops/relu2.h"
#include "model/ops/rmsnorm.h"
#include "model/ops/rope.h"
#include "model/ops/swiglu.h"

namespace muongpt {

namespace {

template <typename T>
constexpr bool kIsBf16 = std::is_same_v<T, __nv_bfloat16>;

template <typename T>
constexpr DType storage_type() {
  static_assert(std::is_same_v<T, float> || kIsBf16<T>, "GPU storage is float or __nv_bfloat16");
  return kIsBf16<T> ? DType::bf16 : DType::f32;
}

template <typename T>
class GptCuda final : public Model {
 public:
  // plan_only: only count the arena (memory_plan()); nothing is allocated and nothing runs.
  GptCuda(const ModelConfig& config, int64_t batch, int64_t seq, const ModelOptions& options,
          bool plan_only = false)
      : Model(config, batch, seq, options),
        own_stream_(options.own_stream && !plan_only ? create_stream() : nullptr),
        stream_(options.own_stream ? own_stream_.get() : options.stream),
        gpu_(options.gpu) {
    if (options_.attention == Attention::flash && !kIsBf16<T>)
      fail("model",
           "flash attention runs in bf16 only (precision is fp32; use attention = "
           "\"straightforward\")");
    if (options_.attention == Attention::flash && !flash_attention_supports(cfg_.d_head))
      fail("model", "flash attention takes head dims 64 and 128, not d_head = ", cfg_.d_head,
           " (use attention = \"straightforward\")");
    P_ = param_count(specs_);
    const int64_t N = tokens(), d = cfg_.d_model, dh = cfg_.d_head, F = cfg_.mlp_width();
    embed_scratch_bytes_ = embedding_backward_scratch_bytes(N, cfg_.vocab_padded());
    mem_.device = Device::cuda;
    layout(arena_);  // counting: fills mem_
    if (plan_only) return;
    arena_ = Arena(Device::cuda, arena_.used());
    layout(arena_);
    // The arena was zeroed by cudaMemset on the legacy stream, which a non-blocking stream
    // would not wait for.
    MG_CUDA(cudaDeviceSynchronize());
    MG_CHECK(mem_.total() == arena_.capacity(), "the memory plan does not add up to the arena");

    // Weight pointers: masters and gradients share param_specs() offsets; the working weights
    // (T) sit at the same offsets in their own buffer (the masters themselves in fp32 mode).
    const GptWeights<float> m = bind_weights<float>(cfg_, specs_, master_);
    g_ = bind_weights<float>(cfg_, specs_, grads_);
    T* work = working_;
    auto re = [&](float* p) -> T* { return p ? work + (p - master_) : nullptr; };
    w_.embed = re(m.embed), w_.final_norm = re(m.final_norm), w_.head = re(m.head);
    w_.blocks.resize(m.blocks.size());
    for (size_t l = 0; l < m.blocks.size(); ++l) {
      const BlockWeights<float>& b = m.blocks[l];
      // One batched GEMM covers q, k, v because their weights are three adjacent [d, d] blocks.
      MG_CHECK(b.wk == b.wq + d * d && b.wv == b.wk + d * d, "wq, wk, wv are not adjacent");
      // Likewise m·{w1, w3}ᵀ for swiglu: two adjacent [F, d] blocks.
      MG_CHECK(!cfg_.swiglu() || b.w3 == b.w1 + F * d, "w1, w3 are not adjacent");
      w_.blocks[l] = {re(b.attn_norm), re(b.wq), re(b.wk), re(b.wv), re(b.wo),
                      re(b.mlp_norm),  re(b.w1), re(b.w3), re(b.w2)};
    }

    // RoPE tables for positions 0..T-1, computed on the host by the CPU's code (angles in
    // double, rounded to fp32 once).
    std::vector<float> cos(size_t(T_ * dh / 2)), sin(cos.size());
    rope_tables(cos.data(), sin.data(), T_, dh, cfg_.rope_base);
    copy_to_device(rope_cos_, cos.data(), sizeof(float) * cos.size(), stream_);
    copy_to_device(rope_sin_, sin.data(), sizeof(float) * sin.size(), stream_);

    // Warm-up: the first gemm_cuda call on a stream allocates its cuBLASLt workspace, the first
    // sum of squares its partial-sum scratch; both happen here, not inside a step. (The
    // gradients are the arena's zeros.)
    // The operands sit 256 bytes apart, so the heuristic sees fully aligned pointers.
    gemm_cuda(stream_, false, false, 1, 1, 1, 1.f, warmup_, 1, warmup_ + 64, 1, 0.f, warmup_ + 128,
              1, DType::f32, DType::f32);
    (void)sum_squares_f32_sync(grads_, P_, stream_);  // also waits for the uploads above
  }

  Device device() const override { return Device::cuda; }
  std::string describe() const override {
    return "cuda:" + std::to_string(gpu_) + " " + std::string(precision_name(options_.precision)) +
           (options_.attention == Attention::flash ? " flash" : "");
  }
  const MemoryPlan& memory_plan() const override { return mem_; }
  CudaStream stream() const override { return stream_; }
  double peak_tflops() const override {
    return gpu_peak_tflops(cuda_device_info(gpu_).name, kIsBf16<T>);
  }

  std::vector<ParamSlot> param_slots() override {
    std::vector<ParamSlot> slots;
    int64_t at = 0;
    for (const ParamSpec& spec : specs_) {
      ParamSlot s{spec.name, spec.shape, master_ + at, grads_ + at, Device::cuda};
      s.stream = stream_;
      if constexpr (kIsBf16<T>) s.working_bf16 = reinterpret_cast<uint16_t*>(working_ + at);
      slots.push_back(std::move(s));
      at += spec.numel();
    }
    return slots;
  }
  // Uploads the masters and refreshes the working copy (fp32 → bf16, rounding to nearest even
  // like float_to_bf16). Synchronous.
  void set_params(const float* values) override {
    copy_to_device(master_, values, sizeof(float) * size_t(P_), stream_);
    if constexpr (kIsBf16<T>) convert(working_, DType::bf16, master_, DType::f32, P_, stream_);
    stream_sync(stream_);
  }
  const float* params_host() override { return download(master_, params_host_); }
  const float* grads_host() override { return download(grads_, grads_host_); }

  double forward(const int32_t* idx_host, const int32_t* targets_host) override {
    const int64_t N = tokens(), d = cfg_.d_model, H = cfg_.n_head(), dh = cfg_.d_head,
                  F = cfg_.mlp_width(), V = cfg_.vocab_size, Vp = cfg_.vocab_padded(),
                  L = cfg_.n_layer;
    const float eps = float(cfg_.norm_eps), scale = float(cfg_.attention_scale()),
                cap = float(cfg_.softcap);
    const CudaStream s = stream_;
    check_token_ids(idx_host, targets_host, N, V);  // before anything is queued
    forward_done_ = false;
    copy_to_device(idx_, idx_host, sizeof(int32_t) * size_t(N), s);
    copy_to_device(targets_, targets_host, sizeof(int32_t) * size_t(N), s);

    lap(clock_, Op::embedding);
    embedding_forward_cuda<T>(embed_raw_, w_.embed, idx_, N, d, s);  // [N, d]
    lap(clock_, Op::norm);
    rmsnorm_forward_cuda<T>(resid_[0], embed_rstd_, embed_raw_, nullptr, N, d, eps, s);
    for (int64_t l = 0; l < L; ++l) {
      const BlockWeights<T>& w = w_.blocks[size_t(l)];
      const LayerActs& a = acts_[size_t(l)];
      T *q = a.qkv, *k = a.qkv + N * d, *v = a.qkv + 2 * N * d;  // each [B, T, H, dh]
      rmsnorm_forward_cuda<T>(a.attn_in, a.attn_rstd, resid_[size_t(l)], w.attn_norm, N, d, eps, s);
      lap(clock_, Op::qkv);
      // [3][N, d] = attn_in · {wq, wk, wv}ᵀ: A shared (stride 0), weights and outputs strided.
      gemm_cuda(s, false, true, N, d, d, 1.f, a.attn_in, d, w.wq, d, 0.f, a.qkv, d, kAb, kAb,
                GemmBatch{3, 0, d * d, N * d});
      lap(clock_, Op::qk_norm_rope);
      qk_norm_rope_forward_cuda<T>(a.q_rot, a.k_rot, a.q_rstd, a.k_rstd, q, k, rope_cos_, rope_sin_,
                                   B_, T_, H, dh, eps, s);  // → [B, H, T, dh]
      lap(clock_, Op::attention);
      attend(a, v, scale);  // a.attn_out [N, d]
      lap(clock_, Op::attn_out);
      residual_linear(a.x_mid, resid_[size_t(l)], a.attn_out, w.wo, d, d);  // x + y·woᵀ
      lap(clock_, Op::norm);
      rmsnorm_forward_cuda<T>(a.mlp_in, a.mlp_rstd, a.x_mid, w.mlp_norm, N, d, eps, s);
      mlp_activation(a, w);  // a.mlp_act [N, F]
      lap(clock_, Op::mlp_out);
      residual_linear(resid_[size_t(l) + 1], a.x_mid, a.mlp_act, w.w2, F, d);  // x + b·w2ᵀ
      lap(clock_, Op::norm);
    }
    rmsnorm_forward_cuda<T>(final_in_, final_rstd_, resid_[size_t(L)], w_.final_norm, N, d, eps, s);
    lap(clock_, Op::head);
    linear(logits_, final_in_, w_.head, d, Vp);  // [N, Vp]; the loss reads the first V columns
    lap(clock_, Op::loss);
    softcap_cross_entropy_forward_cuda<T>(losses_, lse_, loss_mean_, logits_, targets_, N, V, Vp,
                                          cap, s);
    double loss = 0;
    copy_to_host(&loss, loss_mean_, sizeof loss, s);
    stream_sync(s);
    forward_done_ = true;
    return loss;
  }

  void backward(float loss_scale) override {
    if (!forward_done_)
      fail("model",
           "backward() needs a forward() first (each backward consumes the logits and "
           "attention probabilities of the forward before it)");
    forward_done_ = false;
    const int64_t N = tokens(), d = cfg_.d_model, H = cfg_.n_head(), dh = cfg_.d_head,
                  V = cfg_.vocab_size, Vp = cfg_.vocab_padded(), L = cfg_.n_layer;
    const float scale = float(cfg_.attention_scale()), cap = float(cfg_.softcap);
    const CudaStream s = stream_;

    // logits [N, Vp] → d(loss_scale · loss)/d(logits), padded columns 0.
    lap(clock_, Op::loss);
    softcap_cross_entropy_backward_cuda<T>(logits_, lse_, targets_, N, V, Vp, cap, loss_scale, s);
    lap(clock_, Op::head);
    linear_grad(da_, g_.head, logits_, final_in_, w_.head, d, Vp);
    lap(clock_, Op::norm);
    rmsnorm_backward_cuda<T>(dx_, g_.final_norm, da_, resid_[size_t(L)], w_.final_norm, final_rstd_,
                             N, d, false, dg_scratch_, s);
    for (int64_t l = L - 1; l >= 0; --l) {  // dx_ holds d(block output) = d(resid_[l + 1])
      const BlockWeights<T>& w = w_.blocks[size_t(l)];
      const BlockWeights<float>& g = g_.blocks[size_t(l)];
      const LayerActs& a = acts_[size_t(l)];
      const T *q = a.qkv, *k = a.qkv + N * d, *v = a.qkv + 2 * N * d;
      T *dq = dqkv_, *dk = dqkv_ + N * d, *dv = dqkv_ + 2 * N * d;

      mlp_backward(a, w, g);  // da_ = d(mlp_in); gradients of w2, w1 (and w3)
      lap(clock_, Op::norm);
      rmsnorm_backward_cuda<T>(dx_, g.mlp_norm, da_, a.x_mid, w.mlp_norm, a.mlp_rstd, N, d, true,
                               dg_scratch_, s);  // dx_ = d(x_mid)
      lap(clock_, Op::attn_out);
      linear_grad(dy_, g.wo, dx_, a.attn_out, w.wo, d, d);  // dy_ = d(attn_out) [N, d]
      lap(clock_, Op::attention);
      attend_backward(a, v, dv, scale);  // dq_heads_, dk_heads_ [B, H, T, dh]; dv [N, d]
      lap(clock_, Op::qk_norm_rope);
      qk_norm_rope_backward_cuda<T>(dq, dk, dq_heads_, dk_heads_, q, k, a.q_rstd, a.k_rstd,
                                    rope_cos_, rope_sin_, B_, T_, H, dh, s);  // → [B, T, H, dh]
      lap(clock_, Op::qkv);

      stacked_linear_grad(g.wq, dqkv_, a.attn_in, w.wq, 3, d, d);  // wq, wk, wv; da_ = d(attn_in)
      lap(clock_, Op::norm);
      rmsnorm_backward_cuda<T>(dx_, g.attn_norm, da_, resid_[size_t(l)], w.attn_norm, a.attn_rstd,
                               N, d, true, dg_scratch_, s);  // dx_ = d(resid_[l])
    }
    rmsnorm_backward_cuda<T>(dx_, nullptr, dx_, embed_raw_, nullptr, embed_rstd_, N, d, false,
                             nullptr, s);  // d(embed rows), in place (allowed: !accumulate)
    lap(clock_, Op::embedding);
    embedding_backward_cuda<T>(g_.embed, dx_, idx_, N, d, cfg_.vocab_padded(), embed_scratch_,
                               embed_scratch_bytes_, s);
  }

  void zero_grads() override {
    MG_CUDA(
        cudaMemsetAsync(grads_, 0, sizeof(float) * size_t(P_), static_cast<cudaStream_t>(stream_)));
  }
  void scale_grads(float factor) override { scale_f32(grads_, factor, P_, stream_); }
  // One flag from the device; the host copy is searched only to name a bad parameter.
  std::string first_nonfinite(bool grads) override {
    int finite = 0;
    all_finite_f32(grads ? grads_ : master_, P_, finite_flag_, stream_);
    copy_to_host(&finite, finite_flag_, sizeof finite, stream_);
    stream_sync(stream_);
    if (finite) return "";
    const float* flat = grads ? grads_host() : params_host();
    for (const ParamSpec& s : specs_) {
      for (int64_t j = 0; j < s.numel(); ++j)
        if (!std::isfinite(flat[j])) return s.name;
      flat += s.numel();
    }
    return "";
  }
  void synchronize() override { stream_sync(stream_); }
  void set_op_clock(OpClock* clock) override { clock_ = clock; }

  Tensor activation(std::string_view kind, int64_t layer) const override {
    const auto [p, width] = find_activation(kind, layer, resid_[0], final_in_, acts_, cfg_);
    return Tensor(const_cast<T*>(p), storage_type<T>(), {tokens(), width}, Device::cuda);
  }
  Tensor logits() const override {
    return Tensor(logits_, storage_type<T>(), {tokens(), cfg_.vocab_padded()}, Device::cuda);
  }
  void logits_to_host(float* out) const override {
    if (!forward_done_)
      fail("model", "the logits are only available between forward() and backward()");
    const int64_t N = tokens(), V = cfg_.vocab_size, Vp = cfg_.vocab_padded();
    std::vector<float> raw(static_cast<size_t>(N * Vp));
    if constexpr (kIsBf16<T>) {
      std::vector<uint16_t> bits(raw.size());
      copy_to_host(bits.data(), logits_, sizeof(uint16_t) * bits.size(), stream_);
      stream_sync(stream_);
      for (size_t i = 0; i < raw.size(); ++i) raw[i] = bf16_to_float(bits[i]);
    } else {
      copy_to_host(raw.data(), logits_, sizeof(float) * raw.size(), stream_);
      stream_sync(stream_);
    }
    const float cap = float(cfg_.softcap);  // applied in fp32 on the host
    for (int64_t n = 0; n < N; ++n)
      for (int64_t j = 0; j < V; ++j) out[n * V + j] = softcap(raw[size_t(n * Vp + j)], cap);
  }

 private:
  // The arena, declared after the stream, is freed first, through cudaFree, which waits for the
  // device, so no queued kernel outlives its memory. Then a stream of our own is drained and
  // destroyed; a caller's stream is left alone. Errors cannot be thrown from a destructor.
  struct DestroyStream {
    void operator()(CudaStream s) const {
      cudaStreamSynchronize(static_cast<cudaStream_t>(s));
      cudaStreamDestroy(static_cast<cudaStream_t>(s));
    }
  };
  using OwnedStream = std::unique_ptr<CUstream_st, DestroyStream>;
  static OwnedStream create_stream() {
    // A blocking stream: it synchronises with the legacy default stream, so work a caller
    // queues there (e.g. an optimizer left on its default) is still ordered with the model's.
    cudaStream_t created = nullptr;
    MG_CUDA(cudaStreamCreate(&created));
    return OwnedStream(reinterpret_cast<CudaStream>(created));
  }
  const float* download(const float* device, std::vector<float>& host) const {
    host.resize(size_t(P_));
    copy_to_host(host.data(), device, sizeof(float) * size_t(P_), stream_);
    stream_sync(stream_);
    return host.data();
  }

  static constexpr DType kAb = storage_type<T>();  // GEMM operand type

  struct LayerActs {         // what one block keeps for its backward; N = B·T rows
    T* attn_in;              // [N, d]       rmsnorm(x): feeds wq, wk, wv
    float* attn_rstd;        // [N]
    T* qkv;                  // [3, N, d]    q, k, v projections, each [B, T, H, dh]
    float *q_rstd, *k_rstd;  // [N·H]    QK-norm statistics ([B, T, H] order)
    T *q_rot, *k_rot;        // [B, H, T, dh] normed and rotated
    T* probs;                // [B, H, T, T] (the backward turns them into dS); straightforward
    float* lse;              // [B, H, T]    rows' log-sum-exp; flash
    T* attn_out;             // [N, d]       heads merged: feeds wo
    T* x_mid;                // [N, d]       residual stream_ after attention
    T* mlp_in;               // [N, d]       feeds w1
    float* mlp_rstd;         // [N]
    T* mlp_pre;              // [N, F]       m·w1ᵀ; swiglu: [2, N, F], mlp_pre then mlp_up
    T* mlp_up;               // [N, F]       m·w3ᵀ = mlp_pre + N·F (swiglu; else null)
    T* mlp_gate;             // [N, F]       silu(mlp_pre), for the telemetry (swiglu; else null)
    T* mlp_act;              // [N, F]       relu(mlp_pre)² or mlp_gate·mlp_up: feeds w2
  };

  // a.attn_out [N, d] = attention(a.q_rot, a.k_rot, v), keeping what the backward needs.
  void attend(const LayerActs& a, const T* v, float scale) {
    const int64_t H = cfg_.n_head(), dh = cfg_.d_head;
    if constexpr (kIsBf16<T>) {
      if (options_.attention == Attention::flash) {
        flash_attention_forward_cuda(a.attn_out, a.lse, a.q_rot, a.k_rot, v, B_, T_, H, dh, scale,
                                     stream_);
        return;
      }
    }
    heads_split_cuda<T>(v_heads_, v, B_, T_, H, dh, stream_);  // [B, H, T, dh]
    attention_forward_cuda<T>(y_heads_, a.probs, scores_, a.q_rot, a.k_rot, v_heads_, B_, T_, H, dh,
                              scale, stream_);
    heads_merge_cuda<T>(a.attn_out, y_heads_, B_, T_, H, dh, stream_);
  }
  // dq_heads_, dk_heads_ [B, H, T, dh] and dv [N, d] from dy_ = d(a.attn_out).
  void attend_backward(const LayerActs& a, const T* v, T* dv, float scale) {
    const int64_t H = cfg_.n_head(), dh = cfg_.d_head;
    if constexpr (kIsBf16<T>) {
      if (options_.attention == Attention::flash) {
        flash_attention_backward_cuda(dq_heads_, dk_heads_, dv, delta_, dy_, a.attn_out, a.lse,
                                      a.q_rot, a.k_rot, v, B_, T_, H, dh, scale, stream_);
        return;
      }
    }
    heads_split_cuda<T>(y_heads_, dy_, B_, T_, H, dh, stream_);  // d(y) in [B, H, T, dh]
    heads_split_cuda<T>(v_heads_, v, B_, T_, H, dh, stream_);    // v again (the scratch was reused)
    // dS overwrites this layer's probabilities (dv, their other reader, is computed first).
    attention_backward_cuda<T>(dq_heads_, dk_heads_, dv_heads_, scores_, a.probs, y_heads_, a.probs,
                               a.q_rot, a.k_rot, v_heads_, B_, T_, H, dh, scale, stream_);
    heads_merge_cuda<T>(dv, dv_heads_, B_, T_, H, dh, stream_);
  }

  // a.mlp_act [N, F] from a.mlp_in = m: relu(m·w1ᵀ)², or silu(m·w1ᵀ)·(m·w3ᵀ) (keeping both
  // branches and the gate).
  void mlp_activation(const LayerActs& a, const BlockWeights<T>& w) {
    const int64_t N = tokens(), d = cfg_.d_model, F = cfg_.mlp_width();
    lap(clock_, Op::mlp_in);
    if (!cfg_.swiglu()) {
      linear(a.mlp_pre, a.mlp_in, w.w1, d, F);  // [N, F]
      lap(clock_, Op::mlp_act);
      relu2_forward_cuda<T>(a.mlp_act, a.mlp_pre, N * F, stream_);  // [N, F]
      return;
    }
    // [2][N, F] = m · {w1, w3}ᵀ: A shared (stride 0), weights F·d apart, outputs N·F apart.
    gemm_cuda(stream_, false, true, N, F, d, 1.f, a.mlp_in, d, w.w1, d, 0.f, a.mlp_pre, F, kAb, kAb,
              GemmBatch{2, 0, F * d, N * F});
    lap(clock_, Op::mlp_act);
    swiglu_forward_cuda<T>(a.mlp_act, a.mlp_gate, a.mlp_pre, a.mlp_up, N * F, stream_);
  }
  // da_ = d(mlp_in) from dx_ = d(block output); adds the gradients of w2, w1 (and w3) to g.
  // Uses dh_ ([N, F]; [2, N, F] for swiglu).
  void mlp_backward(const LayerActs& a, const BlockWeights<T>& w, const BlockWeights<float>& g) {
    const int64_t N = tokens(), d = cfg_.d_model, F = cfg_.mlp_width();
    const CudaStream s = stream_;
    lap(clock_, Op::mlp_out);
    linear_grad(dh_, g.w2, dx_, a.mlp_act, w.w2, F, d);  // dh_ = d(mlp_act) [N, F]
    lap(clock_, Op::mlp_act);
    if (!cfg_.swiglu()) {
      relu2_backward_cuda<T>(dh_, dh_, a.mlp_pre, N * F, s);  // dh_ = d(mlp_pre)
      lap(clock_, Op::mlp_in);
      linear_grad(da_, g.w1, dh_, a.mlp_in, w.w1, d, F);  // da_ = d(mlp_in)
      return;
    }
    T* du = dh_ + N * F;
    swiglu_backward_cuda<T>(dh_, du, dh_, a.mlp_pre, a.mlp_up, N * F, s);  // [2][N, F]: dh, du
    lap(clock_, Op::mlp_in);
    stacked_linear_grad(g.w1, dh_, a.mlp_in, w.w1, 2, d, F);  // w1, w3; da_ = d(mlp_in)
  }

  // y [N, out] = x [N, in] · W [out, in]ᵀ.
  void linear(T* y, const T* x, const T* W, int64_t in, int64_t out) {
    gemm_cuda(stream_, false, true, tokens(), out, in, 1.f, x, in, W, in, 0.f, y, out, kAb, kAb);
  }
  // y = residual + x · Wᵀ, the sum taken in fp32 in the GEMM epilogue (beta = 1), rounded once.
  void residual_linear(T* y, const T* residual, const T* x, const T* W, int64_t in, int64_t out) {
    copy_device(y, residual, sizeof(T) * size_t(tokens() * out), stream_);
    gemm_cuda(stream_, false, true, tokens(), out, in, 1.f, x, in, W, in, 1.f, y, out, kAb, kAb);
  }
  // dW [out, in] += dyᵀ · x (fp32), and dx [N, in] = dy · W (T).
  void linear_grad(T* dx, float* dW, const T* dy, const T* x, const T* W, int64_t in, int64_t out) {
    gemm_cuda(stream_, true, false, out, in, tokens(), 1.f, dy, out, x, in, 1.f, dW, in, kAb,
              DType::f32);
    gemm_cuda(stream_, false, false, tokens(), in, out, 1.f, dy, out, W, in, 0.f, dx, in, kAb, kAb);
  }
  // k linears of one input x [N, in] whose weights W lie one after the other ([k][out, in], as
  // their gradients dW and the outputs' gradients dy [k][N, out] do): the q, k, v projections,
  // SwiGLU's w1 and w3. dW += dyᵀ · x for all k in one batched GEMM (fp32), and da_ = Σ dy_i · W_i,
  // summed in fp32 (da_f32_) and rounded to T once.
  void stacked_linear_grad(float* dW, const T* dy, const T* x, const T* W, int64_t k, int64_t in,
                           int64_t out) {
    const int64_t N = tokens();
    gemm_cuda(stream_, true, false, out, in, N, 1.f, dy, out, x, in, 1.f, dW, in, kAb, DType::f32,
              GemmBatch{k, N * out, 0, out * in});
    for (int64_t i = 0; i < k; ++i)
      gemm_cuda(stream_, false, false, N, in, out, 1.f, dy + i * N * out, out, W + i * out * in, in,
                i == 0 ? 0.f : 1.f, da_f32_, in, kAb, DType::f32);
    if constexpr (kIsBf16<T>) convert(da_, DType::bf16, da_f32_, DType::f32, N * in, stream_);
  }

  // Carves every buffer out of the arena. Runs twice (count, then allocate): it depends only on
  // the config and the batch shape. Each part of `mem_` is the bytes its buffers took.
  void layout(Arena& a) {
    const int64_t N = tokens(), d = cfg_.d_model, H = cfg_.n_head(), dh = cfg_.d_head,
                  F = cfg_.mlp_width(), Vp = cfg_.vocab_padded(), L = cfg_.n_layer;
    const bool flash = options_.attention == Attention::flash, swiglu = cfg_.swiglu();
    size_t mark = a.used();
    auto part = [&](size_t& bytes) {
      bytes = a.used() - mark;
      mark = a.used();
    };
    auto f32 = [&](int64_t n) {
      return static_cast<float*>(a.alloc_bytes(sizeof(float) * size_t(n)));
    };
    auto buf = [&](int64_t n) { return static_cast<T*>(a.alloc_bytes(sizeof(T) * size_t(n))); };
    auto i32 = [&](int64_t n) {
      return static_cast<int32_t*>(a.alloc_bytes(sizeof(int32_t) * size_t(n)));
    };

    master_ = f32(P_);
    part(mem_.params);
    grads_ = f32(P_);
    part(mem_.grads);
    if constexpr (kIsBf16<T>)
      working_ = buf(P_);
    else
      working_ = master_;
    part(mem_.working);

    idx_ = i32(N), targets_ = i32(N);
    embed_raw_ = buf(N * d), embed_rstd_ = f32(N);
    resid_.assign(size_t(L) + 1, nullptr);
    for (T*& r : resid_) r = buf(N * d);
    acts_.assign(size_t(L), {});
    for (LayerActs& x : acts_) {
      x.attn_in = buf(N * d), x.attn_rstd = f32(N);
      x.qkv = buf(3 * N * d);
      x.q_rstd = f32(N * H), x.k_rstd = f32(N * H);
      x.q_rot = buf(N * d), x.k_rot = buf(N * d);
      if (flash)
        x.lse = f32(B_ * H * T_);
      else
        x.probs = buf(B_ * H * T_ * T_);
      x.attn_out = buf(N * d), x.x_mid = buf(N * d);
      x.mlp_in = buf(N * d), x.mlp_rstd = f32(N);
      x.mlp_pre = buf((swiglu ? 2 : 1) * N * F), x.mlp_act = buf(N * F);
      // Adjacent to mlp_pre: one batched GEMM. (No offset from the counting pass's null.)
      x.mlp_up = swiglu && x.mlp_pre ? x.mlp_pre + N * F : nullptr;
      x.mlp_gate = swiglu ? buf(N * F) : nullptr;
    }
    final_in_ = buf(N * d), final_rstd_ = f32(N);
    logits_ = buf(N * Vp), lse_ = f32(N), losses_ = f32(N);
    loss_mean_ = static_cast<double*>(a.alloc_bytes(sizeof(double)));
    rope_cos_ = f32(T_ * dh / 2), rope_sin_ = f32(T_ * dh / 2);
    part(mem_.activations);

    if (flash) {
      delta_ = f32(B_ * H * T_);
    } else {
      scores_ = f32(B_ * H * T_ * T_);
      v_heads_ = buf(N * d), y_heads_ = buf(N * d), dv_heads_ = buf(N * d);
    }
    dq_heads_ = buf(N * d), dk_heads_ = buf(N * d);
    dqkv_ = buf(3 * N * d);
    dx_ = buf(N * d), da_ = buf(N * d), dy_ = buf(N * d);
    if constexpr (kIsBf16<T>)
      da_f32_ = f32(N * d);
    else
      da_f32_ = da_;                           // fp32 mode: the sum is formed in da_ itself
    dh_ = buf(mlp_backward_scratch(cfg_, N));  // [N, F]; swiglu [2, N, F]
    dg_scratch_ = cfg_.norm_gains ? f32(rmsnorm_backward_scratch_floats(N, d)) : nullptr;
    embed_scratch_ = a.alloc_bytes(embed_scratch_bytes_);
    warmup_ = f32(3 * 64);
    finite_flag_ = static_cast<int*>(a.alloc_bytes(sizeof(int)));
    part(mem_.scratch);
  }

  OwnedStream own_stream_;    // null when queuing on a caller's stream
  OpClock* clock_ = nullptr;  // the per-op profile's (null: none)
  CudaStream stream_;
  int gpu_;
  int64_t P_ = 0;  // parameters
  MemoryPlan mem_;
  // Set by the layout. In fp32 mode the working weights are the masters.
  float* master_ = nullptr;                      // [P] fp32 masters
  float* grads_ = nullptr;                       // [P] fp32 gradients
  T* working_ = nullptr;                         // [P] working weights in the storage type
  int32_t *idx_ = nullptr, *targets_ = nullptr;  // [N] device copies of the last forward's ids
  int* finite_flag_ = nullptr;                   // [1] all_finite_f32's answer
  bool forward_done_ = false;  // a forward whose logits and probabilities are still intact
  std::vector<float> params_host_, grads_host_;  // params_host(), grads_host()
  GptWeights<T> w_;      // working weights (T): what the forward and the input gradients read
  GptWeights<float> g_;  // fp32 gradients
  std::vector<LayerActs> acts_;
  std::vector<T*> resid_;                     // L+1 × [N, d]: resid_[l] is block l's input
  T* embed_raw_ = nullptr;                    // [N, d] gathered embedding rows
  float* embed_rstd_ = nullptr;               // [N]
  T* final_in_ = nullptr;                     // [N, d] feeds the head
  float* final_rstd_ = nullptr;               // [N]
  T* logits_ = nullptr;                       // [N, Vp] uncapped; the backward makes them dlogits
  float *lse_ = nullptr, *losses_ = nullptr;  // [N], [N]
  double* loss_mean_ = nullptr;               // [1]
  float *rope_cos_ = nullptr, *rope_sin_ = nullptr;  // [T, dh/2]
  // Scratch, shared by all layers. Straightforward attention only:
  float* scores_ = nullptr;  // [B, H, T, T] fp32: the forward's scores, the backward's dP
  T* v_heads_ = nullptr;     // [B, H, T, dh] v in the heads layout
  T* y_heads_ = nullptr;     // [B, H, T, dh] attention output (forward), its gradient (backward)
  T* dv_heads_ = nullptr;    // [B, H, T, dh]
  float* delta_ = nullptr;   // [B, H, T] Σ dy ⊙ y per row; flash only
  T *dq_heads_ = nullptr, *dk_heads_ = nullptr;      // [B, H, T, dh]
  T* dqkv_ = nullptr;                                // [3, N, d]
  T *dx_ = nullptr, *da_ = nullptr, *dy_ = nullptr;  // [N, d]
  // [N, d] fp32 sum of the q, k, v input gradients, and of swiglu's two MLP branches (= da_ in
  // fp32 mode)
  float* da_f32_ = nullptr;
  T* dh_ = nullptr;              // [N, F]; swiglu [2, N, F]: d(mlp_pre), d(mlp_up)
  float* dg_scratch_ = nullptr;  // rmsnorm gain-gradient partials (norm_gains only)
  void* embed_scratch_ = nullptr;
  size_t embed_scratch_bytes_ = 0;
  float* warmup_ = nullptr;                      // [3, 64]: three 256-byte-aligned 1×1 operands
  Arena arena_ = Arena::counting(Device::cuda);  // replaced by the real one in the constructor
};

}  // namespace

std::unique_ptr<Model> make_gpt_cuda(const ModelConfig& cfg, int64_t batch, int64_t seq,
                                     const ModelOptions& options) {
  if (options.precision == Precision::bf16)
    return std::make_unique<GptCuda<__nv_bfloat16>>(cfg, batch, seq, options);
  return std::make_unique<GptCuda<float>>(cfg, batch, seq, options);
}

MemoryPlan plan_gpt_cuda(const ModelConfig& cfg, int64_t batch, int64_t seq,
                         const ModelOptions& options) {
  if (options.precision == Precision::bf16)
    return GptCuda<__nv_bfloat16>(cfg, batch, seq, options, true).memory_plan();
  return GptCuda<float>(cfg, batch, seq, options, true).memory_plan();
}

}  // namespace muongpt

#endif  // MUONGPT_HAVE_CUDA
