// The model's GPU op kernels (model/ops/*.cu) against the CPU reference ops on random inputs, in
// fp32 and bf16 storage, forward and backward, over awkward shapes (odd sizes, T = 1, 7, 65, 130,
// batch 1 and 3, dh 32/64/128, H 1 and 3).
//
// Inputs are drawn in float and rounded to the storage type on the host first; the CPU reference
// runs on exactly those values in double (its float instantiation where the test is bit-exact), so
// input rounding cancels out and what remains is the GPU's own arithmetic. Tolerances
// (docs/numerics.md, "GPU tolerances (bf16)"): per element
//     |gpu − ref| ≤ rel · (|ref| + mag) + floor · max|ref|
// where mag is an op-specific magnitude (0 unless stated: Σ|a||b| of a product, for instance).
//   fp32 storage: rel = 1e-5, floor = 1e-6. Both sides round in fp32 (2^-24 ≈ 6e-8) but reduce in
//     different orders (warp trees vs loops, cuBLAS vs OpenBLAS); over the ≤ 10^4-term sums here
//     that is ~1e-7 of the terms' magnitude in practice, so 1e-5 has two orders of margin and
//     still catches any wrong term, index or mask (errors of order |ref| itself).
//   bf16 storage: rel grows by u = 2^-8 (bf16 keeps 8 significant bits; rounding to nearest is
//     off by at most 2^-8 relative) for each rounding of a stored result that reaches the
//     output: one for the elementwise, norm, rope and loss-gradient kernels; for attention the
//     bf16 probabilities and dS enter through a magnitude term, derived in the doc.
// Elementwise ops whose fp32 result is the CPU's own expression (relu², residual add, the
// embedding gather and scatter, the head moves) must match bit for bit.
// Output buffers start as NaN (0xff bytes, NaN in fp32 and bf16), so an unwritten entry fails.
#include <gtest/gtest.h>

#include "testing/attention_reference.h"
#include "testing/cuda_testing.h"
#include "testing/tolerance.h"

#ifdef MUONGPT_HAVE_CUDA
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/rng.h"
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

using testing::DeviceArray;
using Vec = std::vector<double>;
using FVec = std::vector<float>;

constexpr double kU = 1.0 / 256;  // bf16 unit round-off 2^-8
const float kNaN = std::numeric_limits<float>::quiet_NaN();

size_t sz(int64_t n) {
  return static_cast<size_t>(n);
}

using testing::expect_close;
using testing::Tol;
constexpr Tol kF32{1e-5, 1e-6};

template <typename T>
constexpr bool kBf16 = std::is_same_v<T, __nv_bfloat16>;

// The fp32 tolerance plus `roundings` bf16 roundings of the stored result, for bf16 storage.
template <typename T>
Tol storage_tol(Tol f32 = kF32, double roundings = 1) {
  return kBf16<T> ? Tol{f32.rel + roundings * kU, f32.floor} : f32;
}

template <typename T>
float round_to(float x) {
  if constexpr (kBf16<T>)
    return bf16_to_float(float_to_bf16(x));
  else
    return x;
}

// A device array of storage type T, uploaded from and downloaded to float vectors.
template <typename T>
class Buf {
  using H = std::conditional_t<kBf16<T>, uint16_t, float>;

 public:
  explicit Buf(int64_t n) : a_(n) { poison(); }
  explicit Buf(const FVec& v) : a_(int64_t(v.size())) { upload(v); }
  T* get() const { return reinterpret_cast<T*>(a_.get()); }
  void upload(const FVec& v) {
    std::vector<H> h(v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      if constexpr (kBf16<T>)
        h[i] = float_to_bf16(v[i]);
      else
        h[i] = v[i];
    }
    a_.upload(h);
  }
  FVec download() const {
    const std::vector<H> h = a_.download();
    FVec v(h.size());
    for (size_t i = 0; i < h.size(); ++i) {
      if constexpr (kBf16<T>)
        v[i] = bf16_to_float(h[i]);
      else
        v[i] = h[i];
    }
    return v;
  }
  // Every byte 0xff: NaN in fp32 and in bf16.
  void poison() {
    if (a_.size() > 0) MG_CUDA(cudaMemset(a_.get(), 0xff, sizeof(H) * sz(a_.size())));
  }

 private:
  DeviceArray<H> a_;
};

template <typename A>
void poison(A& a) {
  if (a.size() > 0) MG_CUDA(cudaMemset(a.get(), 0xff, sizeof(*a.get()) * sz(a.size())));
}

class Stream {
 public:
  Stream() { MG_CUDA(cudaStreamCreate(&s_)); }
  ~Stream() { cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  CudaStream get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

FVec randn(size_t n, Rng& rng, double scale = 1.0) {
  FVec v(n);
  for (float& x : v) x = float(scale * rng.normal());
  return v;
}
// Normal values already representable in storage T.
template <typename T>
FVec randn_stored(size_t n, Rng& rng, double scale = 1.0) {
  FVec v = randn(n, rng, scale);
  for (float& x : v) x = round_to<T>(x);
  return v;
}
Vec to_double(const FVec& v) {
  return Vec(v.begin(), v.end());
}

// Bit-for-bit equality (so NaN, −0 and +0 are told apart).
void expect_bits(const std::string& what, const FVec& got, const FVec& want) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      ADD_FAILURE() << what << ": first difference at " << i << ": got " << got[i] << ", want "
                    << want[i];
      return;
    }
  }
}

using testing::AttnRef;
using testing::heads_layout;
using testing::HeadShape;
using testing::str;
const HeadShape kHeadShapes[] = {{1, 1, 1, 32},   {3, 7, 3, 64},    {1, 65, 1, 128},
                                 {3, 130, 3, 32}, {1, 130, 2, 128}, {3, 1, 3, 64}};

template <typename T>
class OpsCuda : public ::testing::Test {};
struct StorageName {
  template <typename T>
  static std::string GetName(int) {
    return kBf16<T> ? "bf16" : "f32";
  }
};
using StorageTypes = ::testing::Types<float, __nv_bfloat16>;
TYPED_TEST_SUITE(OpsCuda, StorageTypes, StorageName);

// ---------------------------------------------------------------------------------------------
// relu²: the GPU evaluates the CPU's float expression and rounds it once to T, so the result is
// the CPU's float result rounded to T, bit for bit.
TYPED_TEST(OpsCuda, Relu2MatchesCpuBitForBit) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(101);
  // 2^24 + 77 runs past the grid-stride cap (65536 blocks × 256 threads) into the loop.
  for (int64_t n : {int64_t(1), int64_t(4097), int64_t(1000003), (int64_t(1) << 24) + 77}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const FVec h = randn_stored<T>(sz(n), rng), dout = randn_stored<T>(sz(n), rng),
               y = randn_stored<T>(sz(n), rng);
    FVec want_out(sz(n)), want_dh(sz(n));
    relu2_forward(want_out.data(), h.data(), n);
    relu2_backward(want_dh.data(), dout.data(), h.data(), n);
    for (FVec* v : {&want_out, &want_dh})
      for (float& x : *v) x = round_to<T>(x);

    Buf<T> d_h(h), d_out(n), d_dout(dout), d_y(y);
    relu2_forward_cuda(d_out.get(), d_h.get(), n, stream.get());
    expect_bits("relu2 forward", d_out.download(), want_out);
    relu2_backward_cuda(d_dout.get(), d_dout.get(), d_h.get(), n, stream.get());  // in place
    expect_bits("relu2 backward, in place", d_dout.download(), want_dh);
    relu2_forward_cuda(d_y.get(), d_y.get(), n, stream.get());  // in place
    FVec want_y(sz(n));
    relu2_forward(want_y.data(), y.data(), n);
    for (float& x : want_y) x = round_to<T>(x);
    expect_bits("relu2 forward, in place", d_y.download(), want_y);
  }
}

// ---------------------------------------------------------------------------------------------
// SwiGLU: not bit for bit (the device's expf is not glibc's, both within 2 ulp, and nvcc contracts
// FMAs), so the kernels are held to the CPU op in double with the fp32 band plus one bf16
// rounding; d h = d act · u · silu'(h) gets mag = |d act · u|·σ(h)·(1 + 2|h|), because
// silu' = σ(1 + h(1 − σ)) cancels near h ≈ −1.28 (docs/numerics.md, "SwiGLU"). The backward runs in
// place (dh aliasing dact). The same kernels' source passes this check in the host emulation
// (tests/emulation/test_swiglu_emulated.cpp).
TYPED_TEST(OpsCuda, SwigluMatchesCpuWithinTheBand) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(111);
  const Tol tol = storage_tol<T>();
  // Saturating and special values first (e^(−h) overflows for h ≲ −89: silu → −0, not NaN).
  const FVec special = {-1000.f, -100.f, -89.f, -20.f, -1.28f, -0.f,  0.f,
                        1e-3f,   1.f,    20.f,  89.f,  100.f,  1000.f};
  for (int64_t n : {int64_t(13), int64_t(4097), int64_t(1000003), (int64_t(1) << 24) + 77}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    FVec h = randn_stored<T>(sz(n), rng, 2.5);
    if (n == 13)
      for (size_t i = 0; i < special.size(); ++i) h[i] = round_to<T>(special[i]);
    const FVec u = randn_stored<T>(sz(n), rng), dact = randn_stored<T>(sz(n), rng);
    const Vec hd = to_double(h), ud = to_double(u), dd = to_double(dact);
    Vec act(sz(n)), gate(sz(n)), dh(sz(n)), du(sz(n)), mag_dh(sz(n));
    swiglu_forward(act.data(), gate.data(), hd.data(), ud.data(), n);
    swiglu_backward(dh.data(), du.data(), dd.data(), hd.data(), ud.data(), n);
    for (size_t i = 0; i < sz(n); ++i)
      mag_dh[i] = std::abs(dd[i] * ud[i]) * sigmoid(hd[i]) * (1 + 2 * std::abs(hd[i]));

    Buf<T> d_h(h), d_u(u), d_act(n), d_gate(n), d_dh(dact), d_du(n);
    swiglu_forward_cuda(d_act.get(), d_gate.get(), d_h.get(), d_u.get(), n, stream.get());
    swiglu_backward_cuda(d_dh.get(), d_du.get(), d_dh.get(), d_h.get(), d_u.get(), n,
                         stream.get());  // in place
    expect_close("swiglu gate", d_gate.download(), gate, tol);
    expect_close("swiglu act", d_act.download(), act, tol);
    expect_close("swiglu du", d_du.download(), du, tol);
    expect_close("swiglu dh, in place", d_dh.download(), dh, tol, mag_dh);
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding: the gather is a copy; the scatter-add reproduces the CPU's float loop exactly (same
// additions in the same order), so both are compared bit for bit, and the backward run twice
// must give the same bits (determinism, with heavily repeated ids).
TYPED_TEST(OpsCuda, EmbeddingMatchesCpuBitForBitAndIsDeterministic) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(202);
  struct Shape {
    int64_t vocab, d, N;
  };
  for (Shape s : {Shape{5, 64, 1}, Shape{1000, 33, 21}, Shape{1000, 768, 4099},
                  Shape{50304, 64, 65536}, Shape{7, 130, 3}}) {
    SCOPED_TRACE("vocab " + std::to_string(s.vocab) + " d " + std::to_string(s.d) + " N " +
                 std::to_string(s.N));
    // Ids: a hot id (a long run, past the kernel's 8-row batches) 6% of the time, a warm one 20%,
    // else uniform (many runs of length 1).
    std::vector<int32_t> idx(sz(s.N));
    for (int32_t& id : idx) {
      const double u = rng.uniform();
      id = u < 0.06   ? int32_t(s.vocab - 1)
           : u < 0.26 ? 3 % int32_t(s.vocab)
                      : int32_t(rng.below(uint64_t(s.vocab)));
    }
    const FVec table = randn_stored<T>(sz(s.vocab * s.d), rng);
    const FVec dout = randn_stored<T>(sz(s.N * s.d), rng);
    const FVec dtable0 = randn(sz(s.vocab * s.d), rng);  // fp32 gradient being accumulated

    FVec want_out(sz(s.N * s.d));
    embedding_forward(want_out.data(), table.data(), idx.data(), s.N, s.d);
    FVec want_dtable = dtable0;
    embedding_backward(want_dtable.data(), dout.data(), idx.data(), s.N, s.d);

    DeviceArray<int32_t> d_idx(idx);
    Buf<T> d_table(table), d_out(s.N * s.d), d_dout(dout);
    embedding_forward_cuda(d_out.get(), d_table.get(), d_idx.get(), s.N, s.d, stream.get());
    expect_bits("embedding forward", d_out.download(), want_out);

    const size_t scratch_bytes = embedding_backward_scratch_bytes(s.N, s.vocab);
    DeviceArray<uint8_t> scratch(static_cast<int64_t>(scratch_bytes));
    DeviceArray<float> d_dtable(dtable0);
    embedding_backward_cuda(d_dtable.get(), d_dout.get(), d_idx.get(), s.N, s.d, s.vocab,
                            scratch.get(), scratch_bytes, stream.get());
    const FVec first = d_dtable.download();
    expect_bits("embedding backward vs CPU", first, want_dtable);
    d_dtable.upload(dtable0);
    poison(scratch);
    embedding_backward_cuda(d_dtable.get(), d_dout.get(), d_idx.get(), s.N, s.d, s.vocab,
                            scratch.get(), scratch_bytes, stream.get());
    expect_bits("embedding backward, second run", d_dtable.download(), first);

    EXPECT_THROW(embedding_backward_cuda(d_dtable.get(), d_dout.get(), d_idx.get(), s.N, s.d,
                                         s.vocab, scratch.get(), scratch_bytes - 1, stream.get()),
                 Error);
  }
}

// ---------------------------------------------------------------------------------------------
TYPED_TEST(OpsCuda, RmsNormMatchesCpu) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(303);
  const float eps = 1e-6f;
  struct Shape {
    int64_t rows, n;
  };
  for (Shape s : {Shape{1, 768}, Shape{7, 33}, Shape{130, 768}, Shape{4099, 64}, Shape{3, 100},
                  Shape{65, 2000}}) {
    for (bool gain : {false, true}) {
      SCOPED_TRACE("rows " + std::to_string(s.rows) + " n " + std::to_string(s.n) +
                   (gain ? " with gain" : " without gain"));
      const int64_t rows = s.rows, n = s.n, size = rows * n;
      const FVec x = randn_stored<T>(sz(size), rng, 2.0);
      FVec g = randn(sz(n), rng, 0.3);
      for (float& v : g) v = round_to<T>(1.f + v);
      const FVec dy = randn_stored<T>(sz(size), rng), dx0 = randn_stored<T>(sz(size), rng);
      const FVec dg0 = randn(sz(n), rng);

      // CPU reference in double on the same values.
      const Vec xd = to_double(x), gd = to_double(g), dyd = to_double(dy), dx0d = to_double(dx0);
      const double* gp = gain ? gd.data() : nullptr;
      Vec y(sz(size)), rstd(sz(rows)), dx(sz(size)), dg = to_double(dg0);
      rmsnorm_forward(y.data(), rstd.data(), xd.data(), gp, rows, n, double(eps));
      rmsnorm_backward(dx.data(), gain ? dg.data() : nullptr, dyd.data(), xd.data(), gp,
                       rstd.data(), rows, n, false);
      Vec dx_acc(sz(size)), dg_mag(sz(n), 0.0);
      for (int64_t i = 0; i < size; ++i) dx_acc[i] = dx0d[i] + dx[i];
      for (int64_t j = 0; j < n; ++j) {
        dg_mag[j] = std::abs(dg0[j]);
        for (int64_t i = 0; i < rows; ++i)
          dg_mag[j] += std::abs(dyd[i * n + j] * xd[i * n + j] * rstd[i]);
      }

      Buf<T> d_x(x), d_y(size), d_g(g), d_dy(dy), d_dx(size);
      DeviceArray<float> d_rstd(rows), d_dg(dg0);
      const T* g_ptr = gain ? d_g.get() : nullptr;
      poison(d_rstd);
      rmsnorm_forward_cuda(d_y.get(), d_rstd.get(), d_x.get(), g_ptr, rows, n, eps, stream.get());
      expect_close("y", d_y.download(), y, storage_tol<T>());
      expect_close("rstd", d_rstd.download(), rstd, kF32);

      DeviceArray<float> scratch(std::max<int64_t>(1, rmsnorm_backward_scratch_floats(rows, n)));
      poison(scratch);
      float* dg_ptr = gain ? d_dg.get() : nullptr;
      float* scratch_ptr = gain ? scratch.get() : nullptr;
      rmsnorm_backward_cuda(d_dx.get(), dg_ptr, d_dy.get(), d_x.get(), g_ptr, d_rstd.get(), rows, n,
                            false, scratch_ptr, stream.get());
      expect_close("dx", d_dx.download(), dx, storage_tol<T>());
      const FVec dg_first = d_dg.download();
      if (gain) expect_close("dg", dg_first, dg, kF32, dg_mag);

      d_dx.upload(dx0);  // accumulate into what dx held
      rmsnorm_backward_cuda(d_dx.get(), (float*)nullptr, d_dy.get(), d_x.get(), g_ptr, d_rstd.get(),
                            rows, n, true, (float*)nullptr, stream.get());
      expect_close("dx accumulated", d_dx.download(), dx_acc, storage_tol<T>());

      // dx aliasing dy, with the gain gradient (which must read dy before dx overwrites it).
      d_dg.upload(dg0);
      rmsnorm_backward_cuda(d_dy.get(), dg_ptr, d_dy.get(), d_x.get(), g_ptr, d_rstd.get(), rows, n,
                            false, scratch_ptr, stream.get());
      expect_close("dx in place", d_dy.download(), dx, storage_tol<T>());
      if (gain) expect_bits("dg, second run", d_dg.download(), dg_first);

      rmsnorm_forward_cuda(d_x.get(), d_rstd.get(), d_x.get(), g_ptr, rows, n, eps, stream.get());
      expect_close("y in place", d_x.download(), y, storage_tol<T>());
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fused QK-norm + RoPE vs the CPU's rmsnorm_forward (no gain) then rope_forward; backward vs
// rope_backward then rmsnorm_backward. The rope tables are the CPU's float tables on both sides.
TYPED_TEST(OpsCuda, QkNormRopeMatchesCpu) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(404);
  const float eps = 1e-6f;
  for (const HeadShape& s : kHeadShapes) {
    SCOPED_TRACE(str(s));
    const int64_t B = s.B, T_ = s.T, H = s.H, dh = s.dh, rows = B * T_ * H, size = rows * dh;
    FVec cos(sz(T_ * dh / 2)), sin(sz(T_ * dh / 2));
    rope_tables(cos.data(), sin.data(), T_, dh, 1024.0);
    const Vec cosd = to_double(cos), sind = to_double(sin);
    const FVec q = randn_stored<T>(sz(size), rng, 1.5), k = randn_stored<T>(sz(size), rng);
    const FVec dq_out = randn_stored<T>(sz(size), rng),  // [B, H, T, dh]
        dk_out = randn_stored<T>(sz(size), rng);

    struct Ref {
      Vec out_bhtd, rstd, dx;
    };
    auto reference = [&](const FVec& x, const FVec& dout_bhtd) {
      Ref r;
      const Vec xd = to_double(x);
      Vec y(sz(size));
      r.rstd.resize(sz(rows));
      rmsnorm_forward(y.data(), r.rstd.data(), xd.data(), (const double*)nullptr, rows, dh,
                      double(eps));
      rope_forward(y.data(), cosd.data(), sind.data(), B, T_, H, dh);
      r.out_bhtd = heads_layout(y, s, true);
      r.dx = heads_layout(to_double(dout_bhtd), s, false);
      rope_backward(r.dx.data(), cosd.data(), sind.data(), B, T_, H, dh);
      rmsnorm_backward(r.dx.data(), (double*)nullptr, r.dx.data(), xd.data(),
                       (const double*)nullptr, r.rstd.data(), rows, dh, false);
      return r;
    };
    const Ref rq = reference(q, dq_out), rk = reference(k, dk_out);

    DeviceArray<float> d_cos(cos), d_sin(sin), d_qr(rows), d_kr(rows);
    Buf<T> d_q(q), d_k(k), d_qo(size), d_ko(size), d_dqo(dq_out), d_dko(dk_out), d_dq(size),
        d_dk(size);
    poison(d_qr), poison(d_kr);
    qk_norm_rope_forward_cuda(d_qo.get(), d_ko.get(), d_qr.get(), d_kr.get(), d_q.get(), d_k.get(),
                              d_cos.get(), d_sin.get(), B, T_, H, dh, eps, stream.get());
    expect_close("q out", d_qo.download(), rq.out_bhtd, storage_tol<T>());
    expect_close("k out", d_ko.download(), rk.out_bhtd, storage_tol<T>());
    expect_close("q rstd", d_qr.download(), rq.rstd, kF32);
    expect_close("k rstd", d_kr.download(), rk.rstd, kF32);
    qk_norm_rope_backward_cuda(d_dq.get(), d_dk.get(), d_dqo.get(), d_dko.get(), d_q.get(),
                               d_k.get(), d_qr.get(), d_kr.get(), d_cos.get(), d_sin.get(), B, T_,
                               H, dh, stream.get());
    expect_close("dq", d_dq.download(), rq.dx, storage_tol<T>());
    expect_close("dk", d_dk.download(), rk.dx, storage_tol<T>());
  }
}

// ---------------------------------------------------------------------------------------------
TYPED_TEST(OpsCuda, HeadsSplitAndMergeArePermutations) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(505);
  for (const HeadShape& s : kHeadShapes) {
    SCOPED_TRACE(str(s));
    const int64_t size = s.B * s.T * s.H * s.dh;
    const FVec x = randn_stored<T>(sz(size), rng);
    Buf<T> d_x(x), d_split(size), d_back(size);
    heads_split_cuda(d_split.get(), d_x.get(), s.B, s.T, s.H, s.dh, stream.get());
    expect_bits("split", d_split.download(), heads_layout(x, s, true));
    heads_merge_cuda(d_back.get(), d_split.get(), s.B, s.T, s.H, s.dh, stream.get());
    expect_bits("merge(split(x))", d_back.download(), x);
  }
}

// ---------------------------------------------------------------------------------------------
// Attention: GPU (heads split to [B, H, T, dh], attention, outputs merged back) vs the CPU
// attention in double on [B, T, H, dh]. Magnitudes for the tolerance (per head, from the
// reference P and dP = dy vᵀ, D_t = Σ_u P dP, A_t = Σ_u P |dP|, M = 2 P |dP − D| + P A_t):
//   y: P|v|     dv: Pᵀ|dy|     dq: scale · M|k|     dk: scale · Mᵀ|q|
// bf16: rel = 1e-5 + 1.05 u (first-order bound u·(|ref| + mag), derived in docs/numerics.md, the
// 5% covering second-order terms); fp32: rel = 1e-5 on the same magnitudes. The reference and
// its magnitudes: tests/testing/attention_reference.h.

// Device buffers of one attention call in the GPU layout.
template <typename T>
struct AttnDev {
  AttnDev(const FVec& q, const FVec& k, const FVec& v, const HeadShape& shape, CudaStream stream)
      : s(shape),
        size(shape.B * shape.T * shape.H * shape.dh),
        tt(shape.B * shape.H * shape.T * shape.T),
        q_in(q),
        k_in(k),
        v_in(v),
        qh(size),
        kh(size),
        vh(size),
        yh(size),
        dyh(size),
        dqh(size),
        dkh(size),
        dvh(size),
        out(size),
        probs(tt),
        dscores(tt),
        scores(tt),
        dprobs(tt) {
    heads_split_cuda(qh.get(), q_in.get(), s.B, s.T, s.H, s.dh, stream);
    heads_split_cuda(kh.get(), k_in.get(), s.B, s.T, s.H, s.dh, stream);
    heads_split_cuda(vh.get(), v_in.get(), s.B, s.T, s.H, s.dh, stream);
    poison(scores), poison(dprobs);
  }
  // Merges a [B, H, T, dh] buffer back to [B, T, H, dh] and downloads it.
  FVec merged(const Buf<T>& x, CudaStream stream) {
    out.poison();
    heads_merge_cuda(out.get(), x.get(), s.B, s.T, s.H, s.dh, stream);
    return out.download();
  }
  void forward(float scale, CudaStream stream) {
    attention_forward_cuda(yh.get(), probs.get(), scores.get(), qh.get(), kh.get(), vh.get(), s.B,
                           s.T, s.H, s.dh, scale, stream);
  }
  // dy: [B, T, H, dh]; in_place: dscores written over probs.
  void backward(const FVec& dy, float scale, bool in_place, CudaStream stream) {
    Buf<T> dy_in(dy);
    heads_split_cuda(dyh.get(), dy_in.get(), s.B, s.T, s.H, s.dh, stream);
    dqh.poison(), dkh.poison(), dvh.poison(), dscores.poison();
    attention_backward_cuda(dqh.get(), dkh.get(), dvh.get(), dprobs.get(),
                            in_place ? probs.get() : dscores.get(), dyh.get(), probs.get(),
                            qh.get(), kh.get(), vh.get(), s.B, s.T, s.H, s.dh, scale, stream);
    MG_CUDA(cudaStreamSynchronize(stream));  // dy_in dies here
  }

  HeadShape s;
  int64_t size, tt;
  Buf<T> q_in, k_in, v_in, qh, kh, vh, yh, dyh, dqh, dkh, dvh, out, probs, dscores;
  DeviceArray<float> scores, dprobs;
};

void expect_causal_zeros(const std::string& what, const FVec& probs, const HeadShape& s) {
  for (int64_t bh = 0; bh < s.B * s.H; ++bh)
    for (int64_t t = 0; t < s.T; ++t)
      for (int64_t u = t + 1; u < s.T; ++u) {
        const float p = probs[sz((bh * s.T + t) * s.T + u)];
        if (p != 0.f) {
          ADD_FAILURE() << what << ": head " << bh << " row " << t << " column " << u << " is " << p
                        << ", not 0";
          return;
        }
      }
}

TYPED_TEST(OpsCuda, AttentionMatchesCpu) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(606);
  const Tol tol = kBf16<T> ? Tol{kF32.rel + 1.05 * kU, kF32.floor} : kF32;
  for (const HeadShape& s : kHeadShapes) {
    for (double scale : {0.12, 1.0 / std::sqrt(double(s.dh))}) {
      SCOPED_TRACE(str(s) + " scale " + std::to_string(scale));
      const size_t size = sz(s.B * s.T * s.H * s.dh);
      // q and k as QK-norm leaves them (unit RMS per head), v and dy unit normal.
      const FVec q = randn_stored<T>(size, rng), k = randn_stored<T>(size, rng),
                 v = randn_stored<T>(size, rng), dy = randn_stored<T>(size, rng);
      const AttnRef ref = attention_reference(q, k, v, dy, s, scale);

      AttnDev<T> dev(q, k, v, s, stream.get());
      dev.forward(float(scale), stream.get());
      const FVec probs = dev.probs.download();
      expect_close("probs", probs, ref.probs, storage_tol<T>());
      expect_causal_zeros("probs", probs, s);
      expect_close("y", dev.merged(dev.yh, stream.get()), ref.y, tol, ref.mag_y);

      dev.backward(dy, float(scale), false, stream.get());
      const FVec dq = dev.merged(dev.dqh, stream.get()), dk = dev.merged(dev.dkh, stream.get()),
                 dv = dev.merged(dev.dvh, stream.get());
      expect_close("dq", dq, ref.dq, tol, ref.mag_dq);
      expect_close("dk", dk, ref.dk, tol, ref.mag_dk);
      expect_close("dv", dv, ref.dv, tol, ref.mag_dv);
      expect_causal_zeros("dscores", dev.dscores.download(), s);

      // dscores written over probs: the same bits.
      dev.backward(dy, float(scale), true, stream.get());
      expect_bits("dq, dscores in place", dev.merged(dev.dqh, stream.get()), dq);
      expect_bits("dk, dscores in place", dev.merged(dev.dkh, stream.get()), dk);
      expect_bits("dv, dscores in place", dev.merged(dev.dvh, stream.get()), dv);
    }
  }
}

// The causal mask: changing keys and values after position t0 leaves the outputs up to t0
// unchanged, and a loss that only sees outputs up to t0 gives exactly zero gradient to the keys
// and values after t0 and to the queries after t0.
TYPED_TEST(OpsCuda, AttentionIsCausal) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(707);
  const HeadShape s{2, 67, 2, 64};
  const int64_t t0 = 40, size = s.B * s.T * s.H * s.dh;
  const FVec q = randn_stored<T>(sz(size), rng), k = randn_stored<T>(sz(size), rng),
             v = randn_stored<T>(sz(size), rng);
  auto at = [&](int64_t b, int64_t t, int64_t h, int64_t c) {
    return sz(((b * s.T + t) * s.H + h) * s.dh + c);
  };

  AttnDev<T> dev(q, k, v, s, stream.get());
  dev.forward(0.12f, stream.get());
  const FVec y = dev.merged(dev.yh, stream.get());

  FVec k2 = k, v2 = v;  // huge changes after t0
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = t0 + 1; t < s.T; ++t)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t c = 0; c < s.dh; ++c) {
          k2[at(b, t, h, c)] = round_to<T>(float(1000 * rng.normal()));
          v2[at(b, t, h, c)] = round_to<T>(float(1000 * rng.normal()));
        }
  AttnDev<T> dev2(q, k2, v2, s, stream.get());
  dev2.forward(0.12f, stream.get());
  const FVec y2 = dev2.merged(dev2.yh, stream.get());
  double max_y = 0, max_diff = 0;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t <= t0; ++t)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t c = 0; c < s.dh; ++c) {
          max_y = std::max(max_y, double(std::abs(y[at(b, t, h, c)])));
          max_diff = std::max(max_diff, double(std::abs(y[at(b, t, h, c)] - y2[at(b, t, h, c)])));
        }
  EXPECT_LE(max_diff, 1e-6 * max_y) << "outputs up to t0 moved when only later keys/values did";

  FVec dy = randn_stored<T>(sz(size), rng);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = t0 + 1; t < s.T; ++t)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t c = 0; c < s.dh; ++c) dy[at(b, t, h, c)] = 0.f;
  dev.backward(dy, 0.12f, false, stream.get());
  const FVec dq = dev.merged(dev.dqh, stream.get()), dk = dev.merged(dev.dkh, stream.get()),
             dv = dev.merged(dev.dvh, stream.get());
  int64_t nonzero_before = 0;
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t t = 0; t < s.T; ++t)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t c = 0; c < s.dh; ++c) {
          const size_t i = at(b, t, h, c);
          if (t > t0) {
            ASSERT_EQ(dq[i], 0.f) << "dq at t " << t;
            ASSERT_EQ(dk[i], 0.f) << "dk at t " << t;
            ASSERT_EQ(dv[i], 0.f) << "dv at t " << t;
          } else {
            nonzero_before += dq[i] != 0.f && dk[i] != 0.f && dv[i] != 0.f;
          }
        }
  EXPECT_GT(nonzero_before, 0) << "the gradients up to t0 should not all vanish";
}

// Flash attention (bf16 only) against the same CPU reference. Its tolerance is the straightforward
// kernels' (P and dS are rounded to bf16 where they enter a product, as the stored P and dS are)
// plus one term: the backward's row sums delta = Σ_c dy·y use the stored bf16 y, not Σ_u P·dP, so
// dS carries an extra P·u·E_t with E_t = Σ_c |dy|(|y| + mag_y) (docs/numerics.md, "Flash
// attention"); it enters dq and dk through the magnitudes scale·Σ P·E|k| and scale·Σ P·E|q|.
// Shapes: both head dims, T below, at and across the 64-row tiles (1, 7, 64, 65, 130, 257).
TEST(FlashAttentionCuda, MatchesCpu) {
  MG_REQUIRE_GPU();
  using T = __nv_bfloat16;
  Stream stream;
  Rng rng(909);
  const Tol tol{kF32.rel + 1.05 * kU, kF32.floor};
  const HeadShape shapes[] = {{3, 7, 3, 64},  {1, 65, 1, 128}, {1, 130, 2, 128}, {3, 1, 3, 64},
                              {2, 64, 1, 64}, {1, 257, 2, 64}, {2, 130, 1, 128}};
  for (const HeadShape& s : shapes) {
    const double scale = 1.0 / std::sqrt(double(s.dh));
    SCOPED_TRACE(str(s));
    const int64_t B = s.B, T_ = s.T, H = s.H, dh = s.dh, size = B * T_ * H * dh;
    const FVec q = randn_stored<T>(sz(size), rng), k = randn_stored<T>(sz(size), rng),
               v = randn_stored<T>(sz(size), rng), dy = randn_stored<T>(sz(size), rng);
    AttnRef ref = attention_reference(q, k, v, dy, s, scale);
    testing::add_flash_magnitudes(ref, q, k, dy, s, scale);

    Buf<T> d_q(heads_layout(q, s, true)), d_k(heads_layout(k, s, true)), d_v(v), d_dy(dy),
        d_y(size), d_dq(size), d_dk(size), d_dv(size);
    DeviceArray<float> d_lse(B * H * T_), d_delta(B * H * T_);
    poison(d_lse);
    flash_attention_forward_cuda(d_y.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), B, T_, H,
                                 dh, float(scale), stream.get());
    expect_close("y", d_y.download(), ref.y, tol, ref.mag_y);
    const std::vector<float> got_lse = d_lse.download();
    expect_close("lse", FVec(got_lse.begin(), got_lse.end()), ref.lse2, Tol{1e-5, 1e-5});

    flash_attention_backward_cuda(d_dq.get(), d_dk.get(), d_dv.get(), d_delta.get(), d_dy.get(),
                                  d_y.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), B, T_, H,
                                  dh, float(scale), stream.get());
    const FVec dq = heads_layout(d_dq.download(), s, false),
               dk = heads_layout(d_dk.download(), s, false), dv = d_dv.download();
    expect_close("dq", dq, ref.dq, tol, ref.mag_dq);
    expect_close("dk", dk, ref.dk, tol, ref.mag_dk);
    expect_close("dv", dv, ref.dv, tol, ref.mag_dv);

    // No atomics: a second backward gives the same bits.
    d_dq.poison(), d_dk.poison(), d_dv.poison();
    flash_attention_backward_cuda(d_dq.get(), d_dk.get(), d_dv.get(), d_delta.get(), d_dy.get(),
                                  d_y.get(), d_lse.get(), d_q.get(), d_k.get(), d_v.get(), B, T_, H,
                                  dh, float(scale), stream.get());
    expect_bits("dq again", heads_layout(d_dq.download(), s, false), dq);
    expect_bits("dk again", heads_layout(d_dk.download(), s, false), dk);
    expect_bits("dv again", d_dv.download(), dv);
  }
}

TEST(FlashAttentionCuda, RejectsHeadDimsItDoesNotTake) {
  EXPECT_TRUE(flash_attention_supports(64));
  EXPECT_TRUE(flash_attention_supports(128));
  EXPECT_FALSE(flash_attention_supports(32));
  try {
    flash_attention_forward_cuda(nullptr, nullptr, nullptr, nullptr, nullptr, 1, 8, 1, 32, 1.f,
                                 nullptr);
    ADD_FAILURE() << "dh = 32 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("head dims 64 and 128"), std::string::npos) << e.what();
  }
}

// The softmax kernels alone, on rows longer than a warp's 32 lanes × 32 (T = 1030), with NaN in
// the masked half of their inputs: it must never be read.
TYPED_TEST(OpsCuda, CausalSoftmaxKernelsIgnoreTheMaskedHalf) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(808);
  const int64_t heads = 2, T_ = 1030, rows = heads * T_;
  FVec scores = randn(sz(rows * T_), rng, 3.0), dprobs = randn(sz(rows * T_), rng);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t u = r % T_ + 1; u < T_; ++u)
      scores[sz(r * T_ + u)] = dprobs[sz(r * T_ + u)] = kNaN;
  DeviceArray<float> d_scores(scores), d_dprobs(dprobs);
  Buf<T> d_probs(rows * T_), d_ds(rows * T_);
  causal_softmax_cuda(d_probs.get(), d_scores.get(), rows, T_, stream.get());
  const FVec probs = d_probs.download();

  Vec want_p(sz(rows * T_), 0.0), want_ds(sz(rows * T_), 0.0), mag_ds(sz(rows * T_));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t len = r % T_ + 1;
    double* p = want_p.data() + r * T_;
    for (int64_t u = 0; u < len; ++u) p[u] = scores[sz(r * T_ + u)];
    softmax_row(p, len);
    // The backward is checked on the GPU's own probabilities (so only the kernel is tested).
    double* ds = want_ds.data() + r * T_;
    Vec pg(sz(len));
    double a = 0;
    for (int64_t u = 0; u < len; ++u) {
      pg[u] = probs[sz(r * T_ + u)];
      ds[u] = dprobs[sz(r * T_ + u)];
      a += pg[u] * std::abs(ds[u]);
    }
    for (int64_t u = 0; u < len; ++u) mag_ds[sz(r * T_ + u)] = pg[u] * (std::abs(ds[u]) + a);
    softmax_row_backward(ds, pg.data(), len);
  }
  expect_close("probs", probs, want_p, storage_tol<T>());
  expect_causal_zeros("probs", probs, HeadShape{1, T_, heads, 1});
  causal_softmax_backward_cuda(d_ds.get(), d_dprobs.get(), d_probs.get(), rows, T_, stream.get());
  const FVec ds = d_ds.download();
  expect_close("dscores", ds, want_ds, storage_tol<T>(), mag_ds);
  expect_causal_zeros("dscores", ds, HeadShape{1, T_, heads, 1});
}

// ---------------------------------------------------------------------------------------------
// Fused soft-cap cross-entropy vs softcap_cross_entropy_forward/backward (double) on the first V
// columns. Padded columns V..Vp hold NaN: the forward must not read them and the backward must
// write exact zeros there. The loss is fp32 from identical inputs in both storages (rel 1e-5);
// the gradient's rel is 2e-5 in fp32 (the row's lse is an fp32 sum over up to 5·10^4 terms, and
// each probability inherits its error) plus one bf16 rounding.
TYPED_TEST(OpsCuda, SoftcapCrossEntropyMatchesCpu) {
  MG_REQUIRE_GPU();
  using T = TypeParam;
  Stream stream;
  Rng rng(909);
  struct Shape {
    int64_t N, V, Vp;
  };
  for (Shape s : {Shape{1, 1, 1}, Shape{7, 1000, 1024}, Shape{130, 997, 1003},
                  Shape{3, 50257, 50304}, Shape{4099, 300, 384}, Shape{65, 513, 640}}) {
    for (double cap : {0.0, 15.0}) {
      SCOPED_TRACE("N " + std::to_string(s.N) + " V " + std::to_string(s.V) + " Vp " +
                   std::to_string(s.Vp) + " cap " + std::to_string(cap));
      const int64_t N = s.N, V = s.V, Vp = s.Vp;
      const double dloss = 0.37;
      FVec logits(sz(N * Vp));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < Vp; ++j)
          logits[sz(n * Vp + j)] = j < V ? round_to<T>(float(3 * rng.normal())) : kNaN;
      std::vector<int32_t> targets(sz(N));
      for (int32_t& t : targets) t = int32_t(rng.below(uint64_t(V)));
      if (N > 1) targets[1] = int32_t(V - 1);  // the last real column

      Vec z(sz(N * V)), lse(sz(N)), loss(sz(N));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < V; ++j) z[sz(n * V + j)] = logits[sz(n * Vp + j)];
      const double mean =
          softcap_cross_entropy_forward(z.data(), lse.data(), targets.data(), N, V, cap);
      for (int64_t n = 0; n < N; ++n) loss[n] = lse[n] - z[sz(n * V + targets[n])];
      softcap_cross_entropy_backward(z.data(), lse.data(), targets.data(), N, V, cap, dloss);
      Vec grad(sz(N * Vp), 0.0);
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < V; ++j) grad[sz(n * Vp + j)] = z[sz(n * V + j)];

      Buf<T> d_logits(logits);
      DeviceArray<int32_t> d_targets(targets);
      DeviceArray<float> d_losses(N), d_lse(N);
      DeviceArray<double> d_mean(1);
      poison(d_losses), poison(d_lse), poison(d_mean);
      softcap_cross_entropy_forward_cuda(d_losses.get(), d_lse.get(), d_mean.get(), d_logits.get(),
                                         d_targets.get(), N, V, Vp, float(cap), stream.get());
      const FVec losses = d_losses.download();
      const double gpu_mean = d_mean.download()[0];
      expect_close("losses", losses, loss, kF32);
      expect_close("lse", d_lse.download(), lse, kF32);
      EXPECT_NEAR(gpu_mean, mean, 1e-5 * std::abs(mean)) << "mean loss";
      expect_bits("logits after the forward (untouched)", d_logits.download(), logits);

      // Deterministic: the same bits again.
      softcap_cross_entropy_forward_cuda(d_losses.get(), d_lse.get(), d_mean.get(), d_logits.get(),
                                         d_targets.get(), N, V, Vp, float(cap), stream.get());
      expect_bits("losses, second run", d_losses.download(), losses);
      EXPECT_EQ(d_mean.download()[0], gpu_mean) << "mean loss, second run";

      softcap_cross_entropy_backward_cuda(d_logits.get(), d_lse.get(), d_targets.get(), N, V, Vp,
                                          float(cap), float(dloss), stream.get());
      const FVec g = d_logits.download();
      expect_close("dlogits", g, grad, storage_tol<T>(Tol{2e-5, 1e-6}));
      for (int64_t n = 0; n < N; ++n)
        for (int64_t j = V; j < Vp; ++j)
          ASSERT_EQ(g[sz(n * Vp + j)], 0.f) << "padded column " << j << " of row " << n;
    }
  }
}

}  // namespace
}  // namespace muongpt

#endif  // MUONGPT_HAVE_CUDA
