// The CUDA optimizer: AdamW and Muon over fp32 device parameters with fp32 device state, the
// same math as the CPU optimizer (optim/optimizer_cpu.cpp) through the shared per-element
// functions (optim/update_math.h) and the GPU dualizers (optim/dualizer_cuda.h). Host-side
// orchestration only (the kernels are in optim/optimizer_cuda.cu); compiled in CUDA builds.
//
// Memory: one device allocation (an Arena planned up front) holds the AdamW moments, the Muon
// momentum buffers, the per-group member tables, the Muon scratch (the largest group's
// [count, rows, cols] fp32), the largest dualizer workspace and the gradient-norm scratch. The
// ΔW buffer for telemetry is a second allocation, made when recording is first switched on
// (set_record_updates, never inside step()). The constructor runs every group's dualizer once on
// zeros so that the GEMM plans and library workspaces exist before the first step.
//
// Muon batches same-shape matrices: groups by (shape, dualizer) in order of first appearance, as
// muon_owner_ranks() groups them. Per group: one momentum kernel over all members, one batched
// dualize, one apply kernel. AdamW: one kernel per parameter over its element range.
//
// Several ranks (a device-memory communicator, NCCL): the CPU optimizer's shard plan
// (optim/shard_plan.h). Each rank keeps the AdamW moments of its pieces and the momentum of the
// Muon matrices it owns, and its groups hold only those. Gradients are packed into rank blocks and
// reduce-scattered (all-reduced on telemetry steps), the updated segments all-gathered and
// unpacked, each exchange one copy kernel over a table built once (with the working copies and
// ΔW of the segments other ranks updated).
#ifdef MUONGPT_HAVE_CUDA

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <tuple>

#include "core/arena.h"
#include "core/comm.h"
#include "core/cuda_check.h"
#include "core/error.h"
#include "optim/dualizer_cuda.h"
#include "optim/optimizer_cuda.h"
#include "optim/optimizer_cuda_kernels.h"
#include "optim/optimizer_state.h"
#include "optim/schedule.h"
#include "optim/shard_plan.h"
#include "optim/update_math.h"

namespace muongpt {

namespace {

bool is_device_pointer(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();  // clear the error of a pointer CUDA does not know
    return false;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}

class CudaOptimizer final : public Optimizer {
 public:
  CudaOptimizer(const std::vector<Route>& routes, const std::vector<ParamSlot>& slots,
                const OptimConfig& cfg, Comm* comm, const CudaOptimizerOptions& options)
      : Optimizer(routes),
        cfg_(cfg),
        comm_(comm && comm->world() > 1 ? comm : nullptr),
        rank_(comm_ ? comm_->rank() : 0),
        world_(comm_ ? comm_->world() : 1),
        plan_(make_shard_plan(routes, world_)),
        stream_(options.stream),
        precision_(options.ns_precision.value_or(default_ns_precision(slots))),
        dualizer_(options.stream) {
    if (comm_) comm_->set_stream(stream_);  // collectives ordered with our kernels
    group_matrices(routes, slots, cfg.muon);
    allocate(size_workspaces());
    upload_tables(routes);
    warm_up_dualizers();
  }
  // The communicator outlives us, the stream may not: its collectives go back to the default.
  ~CudaOptimizer() override {
    if (comm_) comm_->set_stream(nullptr);
  }

  double reduce_gradients(bool everywhere) override {
    if (params_.empty()) return 0.0;
    if (world_ > 1) {
      // Sum every rank's gradients into the owners' segments (or everyone's), then average.
      lap(clock_, Op::collectives);
      exchange(grads_out_, 1.0f);
      const float inv = 1.0f / float(world_);
      comm_->set_stream(stream_);
      if (everywhere) {
        comm_->all_reduce_sum(blocks_, plan_.count * world_, DType::f32);
        exchange(grads_in_all_, inv);
      } else {
        comm_->reduce_scatter_sum(blocks_, own_block_, plan_.count, DType::f32);
        exchange(grads_in_, inv);
      }
    }
    // Over this rank's own segments (parameter order: deterministic), then over the ranks.
    lap(clock_, Op::grad_norm);
    sum_squares_segments(grad_segs_, int64_t(params_.size()), grad_partials_, grad_sums_, stream_);
    MG_CUDA(cudaMemcpyAsync(sums_host_.data(), grad_sums_, sums_host_.size() * sizeof(double),
                            cudaMemcpyDeviceToHost, as_cuda(stream_)));
    MG_CUDA(cudaStreamSynchronize(as_cuda(stream_)));
    double ss = 0;
    for (double s : sums_host_) ss += s;
    return std::sqrt(comm_ ? comm_->sum(ss) : ss);
  }

  void step(int64_t step, double lr_scale) override {
    stats_ = begin_step_stats(cfg_.muon, step, lr_scale);
    const double mu = stats_.muon_momentum;
    recorded_ = record_;
    float* delta = recorded_ ? delta_ : nullptr;

    lap(clock_, Op::adamw);
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param& p = params_[i];
      if (p.muon || p.hi == p.lo) continue;  // below, or another rank's
      adamw_range(p, routes_[i], lr_scale, step + 1, delta);
      ++stats_.adamw_params;
    }
    for (const Group& g : groups_) {
      muon_group(g, lr_scale, mu, delta);
      stats_.dualize_calls += g.count;
      stats_.muon_params += g.count;
    }
    if (world_ > 1) {  // every rank's updated segments to every rank
      lap(clock_, Op::collectives);
      exchange(values_out_, 1.0f);
      comm_->set_stream(stream_);
      comm_->all_gather(own_block_, blocks_, plan_.count, DType::f32);
      exchange(values_in_, 1.0f, recorded_);
    }
    ++steps_taken_;
  }

  std::vector<SafetensorsTensor> state_tensors() const override {
    download_state();
    std::vector<SafetensorsTensor> out;
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param& p = params_[i];
      const auto names = state_tensor_names(state_param(p));
      for (size_t j = 0; j < names.size(); ++j)
        out.push_back({names[j], DType::f32, p.slot.shape, host_state_[i][j].data()});
    }
    return out;
  }

  nlohmann::json state_json() const override {
    std::vector<StateParam> params;
    for (const Param& p : params_) params.push_back(state_param(p));
    return optimizer_state_json(params, steps_taken_, stats_.step);
  }

  void load_state(const SafetensorsFile& file, const nlohmann::json& json,
                  const std::string& where) override {
    std::vector<StateParam> params;
    for (const Param& p : params_) params.push_back(state_param(p));
    const StateCounters counters = check_optimizer_state(file, json, params, where);
    // Read and check everything before changing anything.
    std::vector<std::vector<std::vector<float>>> loaded(params_.size());
    for (size_t i = 0; i < params_.size(); ++i)
      for (const std::string& name : state_tensor_names(params[i]))
        loaded[i].push_back(read_state_tensor(file, name, params_[i].slot.shape, where));
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param& p = params_[i];
      if (p.muon) {
        upload(p.buf, loaded[i][0].data(), p.hi - p.lo);  // the owner's whole matrix, or nothing
      } else {
        upload(p.m, loaded[i][0].data() + p.lo, p.hi - p.lo);
        upload(p.v, loaded[i][1].data() + p.lo, p.hi - p.lo);
      }
    }
    MG_CUDA(cudaStreamSynchronize(as_cuda(stream_)));  // the host vectors die here
    steps_taken_ = counters.steps_taken;
    stats_ = StepStats{};
    stats_.step = counters.last_step;
  }

  void set_record_updates(bool on) override {
    record_ = on;
    if (on && !delta_) {
      delta_arena_.emplace(Device::cuda,
                           size_t(std::max<int64_t>(total_numel_, 1)) * sizeof(float));
      delta_ = static_cast<float*>(delta_arena_->alloc_bytes(size_t(total_numel_) * sizeof(float)));
      MG_CUDA(cudaDeviceSynchronize());  // the arena's zero fill ran on the legacy stream
      if (world_ > 1)  // the other ranks' segments get their ΔW from the exchange
        upload_copies(values_in_, values_from_blocks(plan_, shard_tensors(), blocks_, rank_));
    }
  }

  std::span<const float> last_update(size_t i) const override {
    MG_CHECK(i < params_.size(), "parameter index ", i);
    if (!recorded_) return {};
    return {delta_ + params_[i].delta_offset, size_t(params_[i].n)};  // device memory
  }

  const StepStats& last_step_stats() const override { return stats_; }
  size_t memory_bytes() const override {
    return arena_.capacity() + (delta_arena_ ? delta_arena_->capacity() : 0);
  }

 private:
  struct Param {
    ParamSlot slot;
    bool muon = false;
    int64_t n = 0;
    int64_t lo = 0, hi = 0;  // AdamW: the element range this optimizer updates
    float* m = nullptr;      // AdamW moments [hi − lo], device
    float* v = nullptr;
    float* buf = nullptr;  // Muon momentum [rows, cols], device
    size_t group = 0;      // Muon: index into groups_
    int64_t delta_offset = 0;
  };
  // Same-shape Muon matrices with the same dualizer: dualized as one batch.
  struct Group {
    DualizerSpec spec;
    int64_t rows = 0, cols = 0, count = 0;
    std::vector<size_t> members;  // parameter indices
    MuonMember* table = nullptr;  // [count], device
    size_t ws_bytes = 0;
  };

  // The constructor's phases, in order.

  // params_ and groups_: each parameter's element range on this rank, and the Muon matrices it
  // owns grouped by (shape, dualizer) in order of first appearance.
  void group_matrices(const std::vector<Route>& routes, const std::vector<ParamSlot>& slots,
                      const MuonConfig& muon) {
    DualizerSpec ns_default;
    ns_default.coeffs = parse_ns_coeffs(muon.ns_coeffs, "optim", "[optim.muon] ns_coeffs");
    ns_default.ns_steps = static_cast<int>(muon.ns_steps);
    ns_default.ns_eps = muon.ns_eps;

    std::map<std::tuple<std::vector<int64_t>, std::string>, size_t> group_of;
    for (size_t i = 0; i < routes.size(); ++i) {
      const ParamSlot& s = slots[i];
      check_on_device(s);
      Param p;
      p.slot = s;
      p.muon = routes[i].optimizer == "muon";
      p.n = s.numel();
      const ShardSegment mine = plan_.segment(i, rank_);  // one rank: every element
      p.lo = mine.begin;
      p.hi = mine.end;
      p.delta_offset = total_numel_;
      total_numel_ += p.n;
      if (p.muon && p.hi > p.lo) {  // a Muon matrix this rank owns
        const auto key = std::make_tuple(routes[i].shape, routes[i].dualizer);
        auto [it, fresh] = group_of.try_emplace(key, groups_.size());
        if (fresh) {
          Group g;
          g.spec = parse_dualizer(routes[i].dualizer, ns_default, "optim",
                                  "parameter '" + routes[i].name + "'");
          g.rows = routes[i].shape[0];
          g.cols = routes[i].shape[1];
          groups_.push_back(g);
        }
        p.group = it->second;
        groups_[it->second].members.push_back(i);
      }
      params_.push_back(std::move(p));
    }
  }

  static void check_on_device(const ParamSlot& s) {
    for (const void* ptr : {static_cast<const void*>(s.value), static_cast<const void*>(s.grad),
                            static_cast<const void*>(s.working_bf16)})
      if (ptr && !is_device_pointer(ptr))
        fail("optim", "parameter '", s.name,
             "' is marked as on the GPU but its value, gradient or working copy is not device "
             "memory");
  }

  // Each group's member count and dualizer workspace, and ws_bytes_ (the largest); returns the
  // Muon u/O scratch in elements (the largest group).
  int64_t size_workspaces() {
    int64_t scratch = 0;
    for (Group& g : groups_) {
      g.count = int64_t(g.members.size());
      if (g.rows * g.cols == 0) continue;
      scratch = std::max(scratch, g.count * g.rows * g.cols);
      g.ws_bytes = dualizer_.workspace_bytes(g.spec, g.count, g.rows, g.cols, precision_);
      ws_bytes_ = std::max(ws_bytes_, g.ws_bytes);
    }
    return scratch;
  }

  // The single allocation. The layout runs twice (count, then carve); it must be deterministic.
  void allocate(int64_t scratch) {
    const int64_t n_params = int64_t(params_.size());
    arena_ = plan_arena(Device::cuda, [&](Arena& a) {
      for (Param& p : params_) {
        const size_t bytes = size_t(p.hi - p.lo) * sizeof(float);
        if (p.muon) {
          p.buf = static_cast<float*>(a.alloc_bytes(bytes));  // owner only
        } else {
          p.m = static_cast<float*>(a.alloc_bytes(bytes));
          p.v = static_cast<float*>(a.alloc_bytes(bytes));
        }
      }
      for (Group& g : groups_)
        g.table = static_cast<MuonMember*>(a.alloc_bytes(size_t(g.count) * sizeof(MuonMember)));
      u_ = static_cast<float*>(a.alloc_bytes(size_t(scratch) * sizeof(float)));
      ws_ = a.alloc_bytes(ws_bytes_);
      grad_segs_ =
          static_cast<SquaresSegment*>(a.alloc_bytes(size_t(n_params) * sizeof(SquaresSegment)));
      grad_partials_ = static_cast<double*>(
          a.alloc_bytes(size_t(n_params) * kSquaresMaxChunks * sizeof(double)));
      grad_sums_ = static_cast<double*>(a.alloc_bytes(size_t(n_params) * sizeof(double)));
      if (world_ > 1) {
        blocks_ = static_cast<float*>(a.alloc_bytes(size_t(plan_.count * world_) * sizeof(float)));
        own_block_ = static_cast<float*>(a.alloc_bytes(size_t(plan_.count) * sizeof(float)));
        size_t all = 0;
        for (const auto& segs : plan_.by_rank) all += segs.size();
        const size_t own = plan_.by_rank[size_t(rank_)].size();
        for (auto [list, n] : {std::pair{&grads_out_, all},
                               {&grads_in_, own},
                               {&grads_in_all_, all},
                               {&values_out_, own},
                               {&values_in_, all - own}})
          list->table = static_cast<SegmentCopy*>(a.alloc_bytes(n * sizeof(SegmentCopy)));
      }
    });
  }

  // The tables the kernels read, written once.
  void upload_tables(const std::vector<Route>& routes) {
    for (Group& g : groups_) {
      std::vector<MuonMember> table;
      for (size_t i : g.members) {
        const Param& p = params_[i];
        table.push_back({p.slot.grad, p.buf, p.slot.value, p.slot.working_bf16, p.delta_offset,
                         routes[i].lr, routes[i].wd, routes[i].scale});
      }
      MG_CUDA(cudaMemcpy(g.table, table.data(), table.size() * sizeof(MuonMember),
                         cudaMemcpyHostToDevice));
    }
    std::vector<SquaresSegment> segs;
    for (const Param& p : params_) segs.push_back({p.slot.grad + p.lo, p.hi - p.lo});
    if (!segs.empty())
      MG_CUDA(cudaMemcpy(grad_segs_, segs.data(), segs.size() * sizeof(SquaresSegment),
                         cudaMemcpyHostToDevice));
    sums_host_.assign(params_.size(), 0.0);
    if (world_ > 1) {
      const std::vector<ShardTensors> t = shard_tensors();
      upload_copies(grads_out_, gradients_to_blocks(plan_, t, blocks_));
      upload_copies(grads_in_, gradients_from_blocks(plan_, t, own_block_, rank_));
      upload_copies(grads_in_all_, gradients_from_blocks(plan_, t, blocks_, -1));
      upload_copies(values_out_, values_to_block(plan_, t, rank_, own_block_));
      upload_copies(values_in_, values_from_blocks(plan_, t, blocks_, rank_));
    }
    // The arena was zeroed and the tables written on the legacy default stream; `stream` may not
    // be ordered after it.
    MG_CUDA(cudaDeviceSynchronize());
  }

  // Warm-up on the zero scratch: creates the GEMM plans, cuBLASLt/cuSOLVER workspaces and
  // checks the eigensolver once; dualize(0) = 0, so the scratch stays zero.
  void warm_up_dualizers() {
    for (const Group& g : groups_)
      if (g.rows * g.cols > 0)
        dualizer_.dualize_batch(g.spec, u_, u_, g.count, g.rows, g.cols, precision_, ws_,
                                g.ws_bytes);
    MG_CUDA(cudaStreamSynchronize(as_cuda(stream_)));
  }

  static StateParam state_param(const Param& p) { return {p.slot.name, p.slot.shape, p.muon}; }

  void upload(float* dst, const float* src, int64_t n) {
    if (n > 0)
      MG_CUDA(cudaMemcpyAsync(dst, src, size_t(n) * sizeof(float), cudaMemcpyHostToDevice,
                              as_cuda(stream_)));
  }

  // The AdamW update of parameter p on its element range [lo, hi).
  void adamw_range(const Param& p, const Route& r, double lr_scale, int64_t t, float* delta) {
    const AdamWConsts k = adamw_consts(cfg_.adamw, r.lr * lr_scale, r.wd, t);
    uint16_t* working = p.slot.working_bf16 ? p.slot.working_bf16 + p.lo : nullptr;
    launch_adamw(p.slot.value + p.lo, p.slot.grad + p.lo, p.m, p.v, working,
                 delta ? delta + p.delta_offset + p.lo : nullptr, p.hi - p.lo, k, stream_);
  }

  // Momentum, dualizer and update of every matrix of group g (its member table).
  void muon_group(const Group& g, double lr_scale, double mu, float* delta) {
    const int64_t mn = g.rows * g.cols;
    if (mn == 0) return;
    const bool ema = cfg_.muon.momentum_kind == "ema";
    lap(clock_, Op::muon_momentum);
    launch_muon_momentum(g.table, g.count, mn, float(mu), float(1.0 - mu), ema, cfg_.muon.nesterov,
                         u_, stream_);
    lap(clock_, Op::newton_schulz);
    dualizer_.dualize_batch(g.spec, u_, u_, g.count, g.rows, g.cols, precision_, ws_, g.ws_bytes);
    lap(clock_, Op::muon_apply);
    launch_muon_apply(g.table, g.count, mn, u_, lr_scale, delta, stream_);
  }

  // Host copies of the moments and momentum buffers, for state_tensors(): allocated on the first
  // call and refreshed by every call, so the views stay valid while the optimizer lives. One rank
  // downloads into them; several (collective) download their pieces and gather_state()
  // assembles the whole state.
  void download_state() const {
    if (host_state_.empty()) {
      host_state_.resize(params_.size());
      for (size_t i = 0; i < params_.size(); ++i)
        host_state_[i].assign(params_[i].muon ? 1 : 2,
                              std::vector<float>(size_t(params_[i].n), 0.0f));
    }
    const bool whole = world_ == 1;
    std::vector<std::vector<float>> m(params_.size()), v(params_.size()), buf(params_.size());
    auto down = [&](std::vector<float>& piece, std::vector<float>& all, const float* src,
                    int64_t n) {
      float* dst = all.data();
      if (!whole) {
        piece.resize(size_t(n));
        dst = piece.data();
      }
      if (n > 0)
        MG_CUDA(cudaMemcpyAsync(dst, src, size_t(n) * sizeof(float), cudaMemcpyDeviceToHost,
                                as_cuda(stream_)));
    };
    for (size_t i = 0; i < params_.size(); ++i) {
      const Param& p = params_[i];
      auto& h = host_state_[i];
      if (p.muon) {
        down(buf[i], h[0], p.buf, p.hi - p.lo);
      } else {
        down(m[i], h[0], p.m, p.hi - p.lo);
        down(v[i], h[1], p.v, p.hi - p.lo);
      }
    }
    MG_CUDA(cudaStreamSynchronize(as_cuda(stream_)));
    if (whole) return;
    std::vector<StatePiece> mine;
    for (size_t i = 0; i < params_.size(); ++i)
      mine.push_back({params_[i].muon, params_[i].n, m[i], v[i], buf[i]});
    const std::vector<std::vector<float>> gathered = gather_state(plan_, rank_, *comm_, mine);
    for (size_t i = 0; i < params_.size(); ++i) {  // into the same buffers: views stay valid
      const int64_t n = params_[i].n;
      if (n == 0) continue;
      const float* g = gathered[i].data();
      for (size_t j = 0; j < host_state_[i].size(); ++j)
        std::copy(g + int64_t(j) * n, g + int64_t(j + 1) * n, host_state_[i][j].begin());
    }
  }

  std::vector<ShardTensors> shard_tensors() const {
    std::vector<ShardTensors> t;
    for (const Param& p : params_)
      t.push_back({p.slot.value, p.slot.grad, p.slot.working_bf16,
                   delta_ ? delta_ + p.delta_offset : nullptr});
    return t;
  }

  // One exchange of the shard plan: a device table of copies and one kernel over it.
  struct CopyList {
    SegmentCopy* table = nullptr;  // device, in the arena
    int64_t count = 0, longest = 0;
  };
  static void upload_copies(CopyList& list, const std::vector<SegmentCopy>& copies) {
    list.count = int64_t(copies.size());
    list.longest = 0;
    for (const SegmentCopy& c : copies) list.longest = std::max(list.longest, c.n);
    if (copies.empty()) return;
    MG_CUDA(cudaMemcpy(list.table, copies.data(), copies.size() * sizeof(SegmentCopy),
                       cudaMemcpyHostToDevice));
    // From pageable memory the copy may still be in flight when cudaMemcpy returns, and the
    // kernel that reads the table may run on a non-blocking stream.
    MG_CUDA(cudaDeviceSynchronize());
  }
  void exchange(const CopyList& list, float scale, bool record = false) const {
    launch_segment_copies(list.table, list.count, list.longest, scale, record, stream_);
  }

  OptimConfig cfg_;
  Comm* comm_;  // null: one rank
  int rank_, world_;
  ShardPlan plan_;
  CudaStream stream_;
  NsPrecision precision_;
  CudaDualizer dualizer_;
  std::vector<Param> params_;
  std::vector<Group> groups_;
  int64_t total_numel_ = 0;

  Arena arena_ = Arena::counting(Device::cuda);  // the single allocation (state and scratch)
  float* u_ = nullptr;                           // Muon scratch: [count, rows, cols] of a group
  void* ws_ = nullptr;                           // dualizer workspace (the largest group's)
  size_t ws_bytes_ = 0;
  SquaresSegment* grad_segs_ = nullptr;  // [params] the gradients, for the norm
  double* grad_partials_ = nullptr;      // [params, kSquaresMaxChunks]
  double* grad_sums_ = nullptr;          // [params]
  std::vector<double> sums_host_;
  float* blocks_ = nullptr;     // [world, count]: packed gradients, then the gathered values
  float* own_block_ = nullptr;  // [count]: this rank's reduced gradients, then its values
  CopyList grads_out_, grads_in_, grads_in_all_, values_out_, values_in_;

  bool record_ = false, recorded_ = false;
  std::optional<Arena> delta_arena_;  // ΔW, [total_numel_], allocated when recording starts
  float* delta_ = nullptr;
  mutable std::vector<std::vector<std::vector<float>>> host_state_;  // state_tensors() views

  StepStats stats_;
  int64_t steps_taken_ = 0;
};

}  // namespace

NsPrecision default_ns_precision(const std::vector<ParamSlot>& slots) {
  for (const ParamSlot& s : slots)
    if (s.working_bf16) return NsPrecision::bf16;
  return NsPrecision::fp32;
}

std::unique_ptr<Optimizer> make_cuda_optimizer(const std::vector<Route>& routes,
                                               const std::vector<ParamSlot>& slots,
                                               const OptimConfig& cfg, Comm* comm,
                                               const CudaOptimizerOptions& options) {
  if (comm && comm->world() > 1 && comm->buffers() != Device::cuda)
    fail("optim", "the CUDA optimizer needs a device-memory communicator (NCCL), got ",
         comm->backend());
  if (routes.size() != slots.size())
    fail("optim", routes.size(), " routes for ", slots.size(), " parameters");
  for (const ParamSlot& s : slots)
    if (s.device != Device::cuda)
      fail("optim", "the CUDA optimizer needs every parameter on the GPU, '", s.name,
           "' is on the ", device_name(s.device));
  if (cuda_device_count() == 0) fail("optim", "the CUDA optimizer: ", describe_devices());
  return std::make_unique<CudaOptimizer>(routes, slots, cfg, comm, options);
}

}  // namespace muongpt

#endif  // MUONGPT_HAVE_CUDA
