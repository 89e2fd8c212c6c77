// The per-op profile of a training step (`muongpt bench --profile`): the model and the optimizer
// mark where each kind of op begins (lap), and a clock adds up the time between the marks, per
// pass. On the CPU the clock reads the host's clock; on the GPU it records CUDA events on the
// stream, so the step runs unsynchronised and the times are read once it is over. With no clock
// attached a mark costs one branch.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string_view>
#include <utility>

#include "core/device.h"
#include "core/tensor.h"

namespace muongpt {

enum class Op : uint8_t {
  // the model (forward and backward)
  embedding,     // the table gather (its backward: the scatter-add into the table's gradient)
  norm,          // the block and final RMSNorms
  qkv,           // the q, k, v projections (GEMMs)
  qk_norm_rope,  // QK-norm and RoPE
  attention,     // softmax(q kᵀ) v
  attn_out,      // the output projection wo (GEMM) and its residual add
  mlp_in,        // w1 (and w3 for swiglu) (GEMMs)
  mlp_act,       // ReLU² (or SwiGLU's gating)
  mlp_out,       // w2 (GEMM) and its residual add
  head,          // the head (GEMM)
  loss,          // soft-capped cross-entropy
  // the optimizer
  grad_norm,      // the gradients' global norm
  collectives,    // sums and gathers between the ranks
  adamw,          // AdamW's update (and the working copy of its weights)
  muon_momentum,  // Muon's momentum
  newton_schulz,  // the dualizer (Newton–Schulz by default)
  muon_apply,     // Muon's update of the weights (and their working copy)
  other,          // between the marks of a pass: launches, host work, waits
};
inline constexpr int kOps = int(Op::other) + 1;
std::string_view op_name(Op op);

// Which part of the step the time belongs to (the same op can run in several).
enum class Pass : uint8_t { forward, backward, reduce, optimizer };
inline constexpr int kPasses = 4;
std::string_view pass_name(Pass p);

class OpClock {
 public:
  virtual ~OpClock() = default;
  // Starts counting for `pass`; time until the first lap goes to Op::other.
  virtual void begin(Pass pass) = 0;
  // From now on, time goes to `op` (the previous region ends here).
  virtual void lap(Op op) = 0;
  // The region begun by the last lap is divided among `parts` in proportion to their weights
  // (work interleaved over threads, e.g. Muon's per-matrix tasks on the CPU); it ends here.
  virtual void share(std::initializer_list<std::pair<Op, double>> parts) = 0;
  virtual void end() = 0;
  // Milliseconds per pass and op since the last reset (waits for the device).
  using Times = std::array<std::array<double, kOps>, kPasses>;
  virtual Times collect() = 0;
  virtual void reset() = 0;
};

// The clock for a model living on `device` (`stream`: the GPU model's).
std::unique_ptr<OpClock> make_op_clock(Device device, CudaStream stream);

// A mark: `clock` may be null (no profile).
inline void lap(OpClock* clock, Op op) {
  if (clock) clock->lap(op);
}

}  // namespace muongpt
