// The GPU's op clock: a CUDA event at every mark, recorded on the model's stream without
// waiting; collect() waits for the stream once and reads the time between consecutive events.
#ifdef MUONGPT_HAVE_CUDA
#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "core/cuda_check.h"
#include "model/profile.h"

namespace muongpt {

namespace {

class CudaOpClock final : public OpClock {
 public:
  explicit CudaOpClock(CudaStream stream) : stream_(static_cast<cudaStream_t>(stream)) {}
  ~CudaOpClock() override {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }

  void begin(Pass pass) override {
    pass_ = pass;
    mark(Op::other, /*opens=*/true);
  }
  void lap(Op op) override { mark(op, true); }
  // On the GPU the parts run one after the other: the region goes to the first.
  void share(std::initializer_list<std::pair<Op, double>> parts) override {
    marks_.back().op = parts.begin()->first;
    mark(Op::other, true);
  }
  void end() override { mark(Op::other, false); }

  Times collect() override {
    MG_CUDA(cudaStreamSynchronize(stream_));
    for (size_t i = 0; i + 1 < marks_.size(); ++i) {
      if (!marks_[i].opens) continue;
      float ms = 0;
      MG_CUDA(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
      times_[size_t(marks_[i].pass)][size_t(marks_[i].op)] += ms;
    }
    marks_.clear();
    return times_;
  }
  void reset() override {
    times_ = {};
    marks_.clear();
  }

 private:
  struct Mark {
    Pass pass;
    Op op;       // the region that begins at this mark
    bool opens;  // false: the end of a pass (no region follows)
  };
  void mark(Op op, bool opens) {
    if (marks_.size() == events_.size()) {  // the pool grows while profiling only
      cudaEvent_t e = nullptr;
      MG_CUDA(cudaEventCreate(&e));
      events_.push_back(e);
    }
    MG_CUDA(cudaEventRecord(events_[marks_.size()], stream_));
    marks_.push_back({pass_, op, opens});
  }

  cudaStream_t stream_;
  std::vector<cudaEvent_t> events_;
  std::vector<Mark> marks_;
  Times times_{};
  Pass pass_ = Pass::forward;
};

}  // namespace

std::unique_ptr<OpClock> make_cuda_op_clock(CudaStream stream) {
  return std::make_unique<CudaOpClock>(stream);
}

}  // namespace muongpt
#endif
