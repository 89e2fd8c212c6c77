#include "model/profile.h"

#include <chrono>

#include "core/error.h"

namespace muongpt {

std::string_view op_name(Op op) {
  static constexpr std::string_view kNames[kOps] = {
      "embedding",   "norm",    "qkv",           "qk_norm_rope",  "attention",  "attn_out",
      "mlp_in",      "mlp_act", "mlp_out",       "head",          "loss",       "grad_norm",
      "collectives", "adamw",   "muon_momentum", "newton_schulz", "muon_apply", "other"};
  return kNames[size_t(op)];
}

std::string_view pass_name(Pass p) {
  static constexpr std::string_view kNames[kPasses] = {"forward", "backward", "reduce",
                                                       "optimizer"};
  return kNames[size_t(p)];
}

#ifdef MUONGPT_HAVE_CUDA
std::unique_ptr<OpClock> make_cuda_op_clock(CudaStream stream);  // model/profile_cuda.cpp
#endif

namespace {

// The host's clock: the CPU model and optimizer run on the calling thread (and its pool, which
// they join before returning), so a lap's time is the op's.
class HostOpClock final : public OpClock {
 public:
  void begin(Pass pass) override {
    pass_ = pass;
    op_ = Op::other;
    t0_ = now();
    open_ = true;
  }
  void lap(Op op) override {
    close();
    op_ = op;
  }
  void share(std::initializer_list<std::pair<Op, double>> parts) override {
    double total = 0;
    for (const auto& [op, w] : parts) total += w;
    const double ms = now() - t0_;
    for (const auto& [op, w] : parts)
      times_[size_t(pass_)][size_t(op)] += total > 0 ? ms * w / total : ms / double(parts.size());
    t0_ = now();
    op_ = Op::other;
  }
  void end() override {
    close();
    open_ = false;
  }
  Times collect() override { return times_; }
  void reset() override { times_ = {}; }

 private:
  static double now() {
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  void close() {
    if (!open_) return;
    const double t = now();
    times_[size_t(pass_)][size_t(op_)] += t - t0_;
    t0_ = t;
  }

  Times times_{};
  Pass pass_ = Pass::forward;
  Op op_ = Op::other;
  double t0_ = 0;
  bool open_ = false;
};

}  // namespace

std::unique_ptr<OpClock> make_op_clock(Device device, CudaStream stream) {
  if (device == Device::cpu) return std::make_unique<HostOpClock>();
#ifdef MUONGPT_HAVE_CUDA
  return make_cuda_op_clock(stream);
#else
  (void)stream;
  fail("profile", "a GPU clock in a build without CUDA");
#endif
}

}  // namespace muongpt
