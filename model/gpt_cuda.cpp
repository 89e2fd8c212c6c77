// GptCuda (model/gpt_cuda.h): the GPT's forward and backward on the GPU, step for step the same
// computation as Gpt<T> (model/gpt_cpu.cpp), assembled from the op launchers of model/ops/*.cu
// and the cuBLASLt GEMMs of core/gemm_cuda.h.
//
// Host code only (every kernel is in model/ops/*.cu, core/gemm_cuda.cu, core/cuda_util.cu), built
// in CUDA builds; model/gpt_cuda_common.cpp stands in without CUDA. The implementation is a class
// template on the storage type T (float for Precision::fp32, __nv_bfloat16 for Precision::bf16)
// behind GptCuda::Impl; T never appears in the header. What does not depend on T (the masters,
// gradients, uploads and downloads) lives in the Impl base.
//
// Differences from the CPU model's structure, all numerically neutral or better:
//   - q, k, v come from one batched GEMM (wq, wk, wv are adjacent in the flat weights, so they
//     are three [d, d] matrices d·d apart) into one [3, N, d] buffer; their weight gradients are
//     one batched GEMM too; the input gradient dq·wq + dk·wk + dv·wv is summed in fp32 (three
//     GEMMs into an fp32 buffer, rounded to T once).
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

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "core/arena.h"
#include "core/cuda_check.h"
#include "core/cuda_util.h"
#include "core/error.h"
#include "core/gemm_cuda.h"
#include "core/rng.h"
#include "model/gpt.h"
#include "model/gpt_cuda.h"
#include "model/ops/attention.h"
#include "model/ops/cross_entropy.h"
#include "model/ops/embedding.h"
#include "model/ops/flash_attention.h"
#include "model/ops/qk_norm_rope.h"
#include "model/ops/relu2.h"
#include "model/ops/rmsnorm.h"
#include "model/ops/rope.h"

namespace muongpt {

namespace {

template <typename T>
constexpr bool kIsBf16 = std::is_same_v<T, __nv_bfloat16>;

template <typename T>
constexpr DType storage_type() {
  static_assert(std::is_same_v<T, float> || kIsBf16<T>, "GPU storage is float or __nv_bfloat16");
  return kIsBf16<T> ? DType::bf16 : DType::f32;
}

}  // namespace

// ---- what does not depend on the storage type -------------------------------------------------

struct GptCuda::Impl {
  Impl(const ModelConfig& config, int64_t batch, int64_t seq, Precision prec, Attention attn,
       CudaStream s, bool create_stream)
      : cfg(config), B_(batch), T_(seq), precision(prec), attention(attn), stream(s) {
    if (cuda_device_count() == 0) fail("cuda", "the GPU model needs a GPU: ", describe_devices());
    cfg.validate("model config");
    if (B_ <= 0 || T_ <= 0 || T_ > cfg.seq_len)
      fail("model", "batch ", B_, " x sequence ", T_,
           " is not possible (1 <= T <= seq_len = ", cfg.seq_len, ")");
    if (attention == Attention::flash && precision != Precision::bf16)
      fail("model", "flash attention runs in bf16 only (precision is ", precision_name(precision),
           "; use attention = \"straightforward\")");
    if (attention == Attention::flash && !flash_attention_supports(cfg.d_head))
      fail("model", "flash attention takes head dims 64 and 128, not d_head = ", cfg.d_head,
           " (use attention = \"straightforward\")");
    specs = param_specs(cfg);
    P = param_count(specs);
    int64_t off = 0;
    for (const ParamSpec& sp : specs) {
      offsets.push_back(off);
      off += sp.numel();
    }
    if (create_stream) {
      cudaStream_t created = nullptr;
      // A blocking stream: it synchronises with the legacy default stream, so work a caller
      // queues there (e.g. an optimizer left on its default) is still ordered with the model's.
      MG_CUDA(cudaStreamCreate(&created));
      stream = reinterpret_cast<CudaStream>(created);
      owns_stream = true;
    }
  }
  virtual ~Impl() {
    // The arena (a member, freed after this body) goes through cudaFree, which waits for the
    // device, so no queued kernel can outlive its memory. A stream of our own is drained and
    // destroyed here; a caller's stream is left alone. Errors cannot be thrown from here.
    if (owns_stream) {
      cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
      cudaStreamDestroy(static_cast<cudaStream_t>(stream));
    }
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // The storage-type dependent part (GptCudaImpl<T> below).
  virtual double forward(const int32_t* idx_host, const int32_t* targets_host) = 0;
  virtual void backward(float loss_scale) = 0;
  virtual Tensor logits() const = 0;
  virtual Tensor activation(std::string_view kind, int64_t layer) const = 0;

  DType storage() const { return precision == Precision::bf16 ? DType::bf16 : DType::f32; }
  int64_t tokens() const { return B_ * T_; }

  // The CPU model's check, with its message: every id in [0, vocab_size).
  void check_ids(const int32_t* idx_host, const int32_t* targets_host) const {
    const int64_t N = tokens(), V = cfg.vocab_size;
    for (int64_t n = 0; n < N; ++n) {
      if (idx_host[n] < 0 || idx_host[n] >= V || targets_host[n] < 0 || targets_host[n] >= V)
        fail("model", "token id ",
             (idx_host[n] < 0 || idx_host[n] >= V ? idx_host[n] : targets_host[n]), " at position ",
             n, " is outside the vocabulary [0, ", V, ")");
    }
  }

  void sync_working_weights() {
    if (precision == Precision::bf16)
      convert(working, DType::bf16, master, DType::f32, P, stream);  // float_to_bf16, bit for bit
  }

  void set_params_from_host(const float* values) {
    copy_to_device(master, values, sizeof(float) * size_t(P), stream);
    sync_working_weights();
    stream_sync(stream);
  }

  void download(const Tensor& t, float* out) const {
    if (t.device() != Device::cuda || !t.is_contiguous())
      fail("model", "download needs a contiguous device tensor (got ", t.shape_str(), " on ",
           device_name(t.device()), ")");
    const int64_t n = t.numel();
    if (t.dtype() == DType::f32) {
      copy_to_host(out, t.raw(), sizeof(float) * size_t(n), stream);
      stream_sync(stream);
    } else if (t.dtype() == DType::bf16) {
      std::vector<uint16_t> bits(static_cast<size_t>(n));
      copy_to_host(bits.data(), t.raw(), sizeof(uint16_t) * size_t(n), stream);
      stream_sync(stream);
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_float(bits[size_t(i)]);
    } else {
      fail("model", "download of a ", dtype_name(t.dtype()), " tensor (F32 or BF16 only)");
    }
  }

  ModelConfig cfg;
  int64_t B_, T_;
  Precision precision;
  Attention attention;
  CudaStream stream;
  bool owns_stream = false;
  std::vector<ParamSpec> specs;
  std::vector<int64_t> offsets;  // of each parameter in the flat buffers
  int64_t P = 0;
  GpuMemory mem;

  // Set by the layout. In fp32 mode `working` is `master`.
  float* master = nullptr;                     // [P] fp32 masters
  float* grads = nullptr;                      // [P] fp32 gradients
  void* working = nullptr;                     // [P] working weights in the storage type
  int32_t *idx = nullptr, *targets = nullptr;  // [N] device copies of the last forward's ids
  bool forward_done = false;  // a forward whose logits and probabilities are still intact
  Arena arena = Arena::counting(Device::cuda);  // replaced by the real one in the constructor
};

namespace {

// ---- the model for one storage type -------------------------------------------------------------

template <typename T>
class GptCudaImpl final : public GptCuda::Impl {
 public:
  GptCudaImpl(const ModelConfig& config, int64_t batch, int64_t seq, Attention attn, CudaStream s,
              bool create_stream)
      : Impl(config, batch, seq, kIsBf16<T> ? Precision::bf16 : Precision::fp32, attn, s,
             create_stream) {
    const int64_t N = tokens(), d = cfg.d_model, dh = cfg.d_head;
    embed_scratch_bytes_ = embedding_backward_scratch_bytes(N, cfg.vocab_padded());
    try {
      arena = plan_arena(Device::cuda, [this](Arena& a) { layout(a); });
    } catch (const Error& e) {
      // The counting pass has filled `mem`: say what was asked for.
      fail("model", "the GPU model for batch ", B_, " x sequence ", T_, " needs ", mem.describe(),
           ", which does not fit: ", e.what());
    }
    // The arena was zeroed by cudaMemset on the legacy stream, which a non-blocking `stream`
    // would not wait for.
    MG_CUDA(cudaDeviceSynchronize());

    // Weight pointers: masters and gradients share param_specs() offsets; the working weights
    // (T) sit at the same offsets in their own buffer (the masters themselves in fp32 mode).
    const GptWeights<float> m = bind_weights<float>(cfg, specs, master);
    g_ = bind_weights<float>(cfg, specs, grads);
    T* work = static_cast<T*>(working);
    auto re = [&](float* p) -> T* { return p ? work + (p - master) : nullptr; };
    w_.embed = re(m.embed), w_.final_norm = re(m.final_norm), w_.head = re(m.head);
    w_.blocks.resize(m.blocks.size());
    for (size_t l = 0; l < m.blocks.size(); ++l) {
      const BlockWeights<float>& b = m.blocks[l];
      // One batched GEMM covers q, k, v because their weights are three adjacent [d, d] blocks.
      MG_CHECK(b.wk == b.wq + d * d && b.wv == b.wk + d * d, "wq, wk, wv are not adjacent");
      w_.blocks[l] = {re(b.attn_norm), re(b.wq),       re(b.wk), re(b.wv),
                      re(b.wo),        re(b.mlp_norm), re(b.w1), re(b.w2)};
    }

    // RoPE tables for positions 0..T-1, computed on the host by the CPU's code (angles in
    // double, rounded to fp32 once).
    std::vector<float> cos(size_t(T_ * dh / 2)), sin(cos.size());
    rope_tables(cos.data(), sin.data(), T_, dh, cfg.rope_base);
    copy_to_device(rope_cos_, cos.data(), sizeof(float) * cos.size(), stream);
    copy_to_device(rope_sin_, sin.data(), sizeof(float) * sin.size(), stream);

    // Warm-up: the first gemm_cuda call on a stream allocates its cuBLASLt workspace, the first
    // sum of squares its partial-sum scratch; both happen here, not inside a step. (The
    // gradients are the arena's zeros.)
    // The operands sit 256 bytes apart, so the heuristic sees fully aligned pointers.
    gemm_cuda(stream, false, false, 1, 1, 1, 1.f, warmup_, 1, warmup_ + 64, 1, 0.f, warmup_ + 128,
              1, DType::f32, DType::f32);
    (void)sum_squares_f32_sync(grads, P, stream);  // also waits for the uploads above
  }

  double forward(const int32_t* idx_host, const int32_t* targets_host) override {
    const int64_t N = tokens(), d = cfg.d_model, H = cfg.n_head(), dh = cfg.d_head, F = cfg.d_mlp(),
                  V = cfg.vocab_size, Vp = cfg.vocab_padded(), L = cfg.n_layer;
    const float eps = float(cfg.norm_eps), scale = float(cfg.attention_scale()),
                cap = float(cfg.softcap);
    const CudaStream s = stream;
    check_ids(idx_host, targets_host);  // before anything is queued
    forward_done = false;
    copy_to_device(idx, idx_host, sizeof(int32_t) * size_t(N), s);
    copy_to_device(targets, targets_host, sizeof(int32_t) * size_t(N), s);

    embedding_forward_cuda<T>(embed_raw_, w_.embed, idx, N, d, s);  // [N, d]
    rmsnorm_forward_cuda<T>(resid_[0], embed_rstd_, embed_raw_, nullptr, N, d, eps, s);
    for (int64_t l = 0; l < L; ++l) {
      const BlockWeights<T>& w = w_.blocks[size_t(l)];
      const LayerActs& a = acts_[size_t(l)];
      T *q = a.qkv, *k = a.qkv + N * d, *v = a.qkv + 2 * N * d;  // each [B, T, H, dh]
      rmsnorm_forward_cuda<T>(a.attn_in, a.attn_rstd, resid_[size_t(l)], w.attn_norm, N, d, eps, s);
      // [3][N, d] = attn_in · {wq, wk, wv}ᵀ: A shared (stride 0), weights and outputs strided.
      gemm_cuda(s, false, true, N, d, d, 1.f, a.attn_in, d, w.wq, d, 0.f, a.qkv, d, kAb, kAb,
                GemmBatch{3, 0, d * d, N * d});
      qk_norm_rope_forward_cuda<T>(a.q_rot, a.k_rot, a.q_rstd, a.k_rstd, q, k, rope_cos_, rope_sin_,
                                   B_, T_, H, dh, eps, s);                  // → [B, H, T, dh]
      attend(a, v, scale);                                                  // a.attn_out [N, d]
      residual_linear(a.x_mid, resid_[size_t(l)], a.attn_out, w.wo, d, d);  // x + y·woᵀ
      rmsnorm_forward_cuda<T>(a.mlp_in, a.mlp_rstd, a.x_mid, w.mlp_norm, N, d, eps, s);
      linear(a.mlp_pre, a.mlp_in, w.w1, d, F);                                 // [N, F]
      relu2_forward_cuda<T>(a.mlp_act, a.mlp_pre, N * F, s);                   // [N, F]
      residual_linear(resid_[size_t(l) + 1], a.x_mid, a.mlp_act, w.w2, F, d);  // x + b·w2ᵀ
    }
    rmsnorm_forward_cuda<T>(final_in_, final_rstd_, resid_[size_t(L)], w_.final_norm, N, d, eps, s);
    linear(logits_, final_in_, w_.head, d, Vp);  // [N, Vp]; the loss reads the first V columns
    softcap_cross_entropy_forward_cuda<T>(losses_, lse_, loss_mean_, logits_, targets, N, V, Vp,
                                          cap, s);
    double loss = 0;
    copy_to_host(&loss, loss_mean_, sizeof loss, s);
    stream_sync(s);
    forward_done = true;
    return loss;
  }

  void backward(float loss_scale) override {
    if (!forward_done)
      fail("model",
           "backward() needs a forward() first (each backward consumes the logits and "
           "attention probabilities of the forward before it)");
    forward_done = false;
    const int64_t N = tokens(), d = cfg.d_model, H = cfg.n_head(), dh = cfg.d_head, F = cfg.d_mlp(),
                  V = cfg.vocab_size, Vp = cfg.vocab_padded(), L = cfg.n_layer;
    const float scale = float(cfg.attention_scale()), cap = float(cfg.softcap);
    const CudaStream s = stream;

    // logits [N, Vp] → d(loss_scale · loss)/d(logits), padded columns 0.
    softcap_cross_entropy_backward_cuda<T>(logits_, lse_, targets, N, V, Vp, cap, loss_scale, s);
    linear_grad(da_, g_.head, logits_, final_in_, w_.head, d, Vp);
    rmsnorm_backward_cuda<T>(dx_, g_.final_norm, da_, resid_[size_t(L)], w_.final_norm, final_rstd_,
                             N, d, false, dg_scratch_, s);
    for (int64_t l = L - 1; l >= 0; --l) {  // dx_ holds d(block output) = d(resid_[l + 1])
      const BlockWeights<T>& w = w_.blocks[size_t(l)];
      const BlockWeights<float>& g = g_.blocks[size_t(l)];
      const LayerActs& a = acts_[size_t(l)];
      const T *q = a.qkv, *k = a.qkv + N * d, *v = a.qkv + 2 * N * d;
      T *dq = dqkv_, *dk = dqkv_ + N * d, *dv = dqkv_ + 2 * N * d;

      linear_grad(dh_, g.w2, dx_, a.mlp_act, w.w2, F, d);     // dh_ = d(mlp_act)
      relu2_backward_cuda<T>(dh_, dh_, a.mlp_pre, N * F, s);  // dh_ = d(mlp_pre)
      linear_grad(da_, g.w1, dh_, a.mlp_in, w.w1, d, F);      // da_ = d(mlp_in)
      rmsnorm_backward_cuda<T>(dx_, g.mlp_norm, da_, a.x_mid, w.mlp_norm, a.mlp_rstd, N, d, true,
                               dg_scratch_, s);             // dx_ = d(x_mid)
      linear_grad(dy_, g.wo, dx_, a.attn_out, w.wo, d, d);  // dy_ = d(attn_out) [N, d]

      attend_backward(a, v, dv, scale);  // dq_heads_, dk_heads_ [B, H, T, dh]; dv [N, d]
      qk_norm_rope_backward_cuda<T>(dq, dk, dq_heads_, dk_heads_, q, k, a.q_rstd, a.k_rstd,
                                    rope_cos_, rope_sin_, B_, T_, H, dh, s);  // → [B, T, H, dh]

      // d{wq, wk, wv} += d{q, k, v}ᵀ · attn_in: one batched GEMM, fp32 accumulation into grads.
      gemm_cuda(s, true, false, d, d, N, 1.f, dqkv_, d, a.attn_in, d, 1.f, g.wq, d, kAb, DType::f32,
                GemmBatch{3, N * d, 0, d * d});
      // d(attn_in) = dq·wq + dk·wk + dv·wv, summed in fp32, rounded to T once.
      for (int64_t i = 0; i < 3; ++i)
        gemm_cuda(s, false, false, N, d, d, 1.f, dqkv_ + i * N * d, d, w.wq + i * d * d, d,
                  i == 0 ? 0.f : 1.f, da_f32_, d, kAb, DType::f32);
      if constexpr (kIsBf16<T>) convert(da_, DType::bf16, da_f32_, DType::f32, N * d, s);
      rmsnorm_backward_cuda<T>(dx_, g.attn_norm, da_, resid_[size_t(l)], w.attn_norm, a.attn_rstd,
                               N, d, true, dg_scratch_, s);  // dx_ = d(resid_[l])
    }
    rmsnorm_backward_cuda<T>(dx_, nullptr, dx_, embed_raw_, nullptr, embed_rstd_, N, d, false,
                             nullptr, s);  // d(embed rows), in place (allowed: !accumulate)
    embedding_backward_cuda<T>(g_.embed, dx_, idx, N, d, cfg.vocab_padded(), embed_scratch_,
                               embed_scratch_bytes_, s);
  }

  Tensor logits() const override {
    return Tensor(logits_, storage_type<T>(), {tokens(), cfg.vocab_padded()}, Device::cuda);
  }

  Tensor activation(std::string_view kind, int64_t layer) const override {
    const int64_t N = tokens(), d = cfg.d_model, F = cfg.d_mlp();
    const auto [p, width] = find_activation(kind, layer, resid_[0], final_in_, acts_, d, F);
    return Tensor(const_cast<T*>(p), storage_type<T>(), {N, width}, Device::cuda);
  }

 private:
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
    T* x_mid;                // [N, d]       residual stream after attention
    T* mlp_in;               // [N, d]       feeds w1
    float* mlp_rstd;         // [N]
    T* mlp_pre;              // [N, F]
    T* mlp_act;              // [N, F]       relu(mlp_pre)²: feeds w2
  };

  // a.attn_out [N, d] = attention(a.q_rot, a.k_rot, v), keeping what the backward needs.
  void attend(const LayerActs& a, const T* v, float scale) {
    const int64_t H = cfg.n_head(), dh = cfg.d_head;
    if constexpr (kIsBf16<T>) {
      if (attention == Attention::flash) {
        flash_attention_forward_cuda(a.attn_out, a.lse, a.q_rot, a.k_rot, v, B_, T_, H, dh, scale,
                                     stream);
        return;
      }
    }
    heads_split_cuda<T>(v_heads_, v, B_, T_, H, dh, stream);  // [B, H, T, dh]
    attention_forward_cuda<T>(y_heads_, a.probs, scores_, a.q_rot, a.k_rot, v_heads_, B_, T_, H, dh,
                              scale, stream);
    heads_merge_cuda<T>(a.attn_out, y_heads_, B_, T_, H, dh, stream);
  }
  // dq_heads_, dk_heads_ [B, H, T, dh] and dv [N, d] from dy_ = d(a.attn_out).
  void attend_backward(const LayerActs& a, const T* v, T* dv, float scale) {
    const int64_t H = cfg.n_head(), dh = cfg.d_head;
    if constexpr (kIsBf16<T>) {
      if (attention == Attention::flash) {
        flash_attention_backward_cuda(dq_heads_, dk_heads_, dv, delta_, dy_, a.attn_out, a.lse,
                                      a.q_rot, a.k_rot, v, B_, T_, H, dh, scale, stream);
        return;
      }
    }
    heads_split_cuda<T>(y_heads_, dy_, B_, T_, H, dh, stream);  // d(y) in [B, H, T, dh]
    heads_split_cuda<T>(v_heads_, v, B_, T_, H, dh, stream);    // v again (the scratch was reused)
    // dS overwrites this layer's probabilities (dv, their other reader, is computed first).
    attention_backward_cuda<T>(dq_heads_, dk_heads_, dv_heads_, scores_, a.probs, y_heads_, a.probs,
                               a.q_rot, a.k_rot, v_heads_, B_, T_, H, dh, scale, stream);
    heads_merge_cuda<T>(dv, dv_heads_, B_, T_, H, dh, stream);
  }

  // y [N, out] = x [N, in] · W [out, in]ᵀ.
  void linear(T* y, const T* x, const T* W, int64_t in, int64_t out) {
    gemm_cuda(stream, false, true, tokens(), out, in, 1.f, x, in, W, in, 0.f, y, out, kAb, kAb);
  }
  // y = residual + x · Wᵀ, the sum taken in fp32 in the GEMM epilogue (beta = 1), rounded once.
  void residual_linear(T* y, const T* residual, const T* x, const T* W, int64_t in, int64_t out) {
    copy_device(y, residual, sizeof(T) * size_t(tokens() * out), stream);
    gemm_cuda(stream, false, true, tokens(), out, in, 1.f, x, in, W, in, 1.f, y, out, kAb, kAb);
  }
  // dW [out, in] += dyᵀ · x (fp32), and dx [N, in] = dy · W (T).
  void linear_grad(T* dx, float* dW, const T* dy, const T* x, const T* W, int64_t in, int64_t out) {
    gemm_cuda(stream, true, false, out, in, tokens(), 1.f, dy, out, x, in, 1.f, dW, in, kAb,
              DType::f32);
    gemm_cuda(stream, false, false, tokens(), in, out, 1.f, dy, out, W, in, 0.f, dx, in, kAb, kAb);
  }

  // Carves every buffer out of the arena. Runs twice (count, then allocate): it depends only on
  // the config and the batch shape. Each part of `mem` is the bytes its buffers took.
  void layout(Arena& a) {
    const int64_t N = tokens(), d = cfg.d_model, H = cfg.n_head(), dh = cfg.d_head, F = cfg.d_mlp(),
                  Vp = cfg.vocab_padded(), L = cfg.n_layer;
    const bool flash = attention == Attention::flash;
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

    master = f32(P);
    part(mem.params);
    grads = f32(P);
    part(mem.grads);
    if constexpr (kIsBf16<T>)
      working = buf(P);
    else
      working = master;
    part(mem.working);

    idx = i32(N), targets = i32(N);
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
      x.mlp_pre = buf(N * F), x.mlp_act = buf(N * F);
    }
    final_in_ = buf(N * d), final_rstd_ = f32(N);
    logits_ = buf(N * Vp), lse_ = f32(N), losses_ = f32(N);
    loss_mean_ = static_cast<double*>(a.alloc_bytes(sizeof(double)));
    rope_cos_ = f32(T_ * dh / 2), rope_sin_ = f32(T_ * dh / 2);
    part(mem.activations);

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
      da_f32_ = da_;  // fp32 mode: the sum is formed in da_ itself
    dh_ = buf(N * F);
    dg_scratch_ = cfg.norm_gains ? f32(rmsnorm_backward_scratch_floats(N, d)) : nullptr;
    embed_scratch_ = a.alloc_bytes(embed_scratch_bytes_);
    warmup_ = f32(3 * 64);
    part(mem.scratch);
  }

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
  float* da_f32_ = nullptr;      // [N, d] fp32 sum of the q, k, v input gradients (= da_ in fp32)
  T* dh_ = nullptr;              // [N, F]
  float* dg_scratch_ = nullptr;  // rmsnorm gain-gradient partials (norm_gains only)
  void* embed_scratch_ = nullptr;
  size_t embed_scratch_bytes_ = 0;
  float* warmup_ = nullptr;  // [3, 64]: three 256-byte-aligned 1×1 operands
};

std::unique_ptr<GptCuda::Impl> make_impl(const ModelConfig& cfg, int64_t batch, int64_t seq,
                                         Precision precision, Attention attention,
                                         CudaStream stream, bool create_stream) {
  if (precision == Precision::bf16)
    return std::make_unique<GptCudaImpl<__nv_bfloat16>>(cfg, batch, seq, attention, stream,
                                                        create_stream);
  return std::make_unique<GptCudaImpl<float>>(cfg, batch, seq, attention, stream, create_stream);
}

}  // namespace

// ---- GptCuda: forwards to the implementation
// -----------------------------------------------------

GptCuda::GptCuda(const ModelConfig& cfg, int64_t batch, int64_t seq, Precision precision,
                 Attention attention)
    : impl_(make_impl(cfg, batch, seq, precision, attention, nullptr, true)) {}
GptCuda::GptCuda(const ModelConfig& cfg, int64_t batch, int64_t seq, Precision precision,
                 CudaStream stream, Attention attention)
    : impl_(make_impl(cfg, batch, seq, precision, attention, stream, false)) {}
GptCuda::~GptCuda() = default;

const ModelConfig& GptCuda::config() const {
  return impl_->cfg;
}
int64_t GptCuda::batch() const {
  return impl_->B_;
}
int64_t GptCuda::seq() const {
  return impl_->T_;
}
Precision GptCuda::precision() const {
  return impl_->precision;
}
Attention GptCuda::attention() const {
  return impl_->attention;
}
CudaStream GptCuda::stream() const {
  return impl_->stream;
}
size_t GptCuda::arena_bytes() const {
  return impl_->arena.capacity();
}
const GpuMemory& GptCuda::memory() const {
  return impl_->mem;
}
const std::vector<ParamSpec>& GptCuda::specs() const {
  return impl_->specs;
}

int GptCuda::find(std::string_view name) const {
  for (size_t i = 0; i < impl_->specs.size(); ++i)
    if (impl_->specs[i].name == name) return static_cast<int>(i);
  return -1;
}

Tensor GptCuda::param(size_t i) const {
  const Impl& m = *impl_;
  return Tensor(m.master + m.offsets.at(i), DType::f32, m.specs.at(i).shape, Device::cuda);
}
Tensor GptCuda::grad(size_t i) const {
  const Impl& m = *impl_;
  return Tensor(m.grads + m.offsets.at(i), DType::f32, m.specs.at(i).shape, Device::cuda);
}
Tensor GptCuda::params_flat() const {
  return Tensor(impl_->master, DType::f32, {impl_->P}, Device::cuda);
}
Tensor GptCuda::grads_flat() const {
  return Tensor(impl_->grads, DType::f32, {impl_->P}, Device::cuda);
}
Tensor GptCuda::working_flat() const {
  return Tensor(impl_->working, impl_->storage(), {impl_->P}, Device::cuda);
}

void GptCuda::init_params(uint64_t seed) {
  // Gpt<float>::init_params: one generator, parameters in specs() order.
  const Impl& m = *impl_;
  std::vector<float> values(static_cast<size_t>(m.P));
  Rng rng(seed);
  for (size_t i = 0; i < m.specs.size(); ++i)
    init_param(m.specs[i], values.data() + m.offsets[i], rng);
  impl_->set_params_from_host(values.data());
}

void GptCuda::set_params_from_host(const float* values) {
  impl_->set_params_from_host(values);
}

void GptCuda::params_to_host(float* out) const {
  copy_to_host(out, impl_->master, sizeof(float) * size_t(impl_->P), impl_->stream);
  stream_sync(impl_->stream);
}

void GptCuda::grads_to_host(float* out) const {
  copy_to_host(out, impl_->grads, sizeof(float) * size_t(impl_->P), impl_->stream);
  stream_sync(impl_->stream);
}

void GptCuda::sync_working_weights() {
  impl_->sync_working_weights();
}

double GptCuda::forward(const int32_t* idx, const int32_t* targets) {
  return impl_->forward(idx, targets);
}

void GptCuda::backward(float loss_scale) {
  impl_->backward(loss_scale);
}

Tensor GptCuda::logits() const {
  return impl_->logits();
}

void GptCuda::logits_to_host(float* out) const {
  const Impl& m = *impl_;
  if (!m.forward_done)
    fail("model", "the logits are only available between forward() and backward()");
  const int64_t N = m.tokens(), V = m.cfg.vocab_size, Vp = m.cfg.vocab_padded();
  std::vector<float> raw(static_cast<size_t>(N * Vp));
  m.download(m.logits(), raw.data());
  const float cap = float(m.cfg.softcap);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t j = 0; j < V; ++j) out[n * V + j] = softcap(raw[size_t(n * Vp + j)], cap);
}

void GptCuda::zero_grads() {
  MG_CUDA(cudaMemsetAsync(impl_->grads, 0, sizeof(float) * size_t(impl_->P),
                          static_cast<cudaStream_t>(impl_->stream)));
}

double GptCuda::grad_norm() const {
  return std::sqrt(sum_squares_f32_sync(impl_->grads, impl_->P, impl_->stream));
}

std::vector<ParamSlot> GptCuda::param_slots_cuda() const {
  const Impl& m = *impl_;
  std::vector<ParamSlot> slots;
  slots.reserve(m.specs.size());
  for (size_t i = 0; i < m.specs.size(); ++i) {
    ParamSlot s;
    s.name = m.specs[i].name;
    s.shape = m.specs[i].shape;
    s.value = m.master + m.offsets[i];
    s.grad = m.grads + m.offsets[i];
    s.device = Device::cuda;
    s.stream = m.stream;
    if (m.precision == Precision::bf16)
      s.working_bf16 = static_cast<uint16_t*>(m.working) + m.offsets[i];
    slots.push_back(std::move(s));
  }
  return slots;
}

Tensor GptCuda::activation(std::string_view kind, int64_t layer) const {
  return impl_->activation(kind, layer);
}

void GptCuda::download(const Tensor& device_view, float* out) const {
  impl_->download(device_view, out);
}

}  // namespace muongpt

#endif  // MUONGPT_HAVE_CUDA
