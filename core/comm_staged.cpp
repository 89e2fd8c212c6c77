// The staged communicator (core/comm_staged.h): device buffers through one host buffer to a
// host-memory communicator. No CUDA here; the device side is a StagingDevice.
#include "core/comm_staged.h"

#include <string>
#include <utility>

#include "core/error.h"

namespace muongpt {

namespace {

class StagedComm final : public Comm {
 public:
  StagedComm(std::unique_ptr<Comm> owned, Comm& host, std::unique_ptr<StagingDevice> device)
      // Timeout 0: no watchdog of our own. The host communicator's watches its collectives (the
      // waits for other ranks); a second one would print a second error line for the same wait.
      : Comm(host.rank(), host.world(), 0),
        owned_(std::move(owned)),
        host_(host),
        device_(std::move(device)),
        name_(std::string(host.backend()) + "-staged") {
    MG_CHECK(host_.buffers() == Device::cpu, "a staged communicator needs a host-memory one, got ",
             host_.backend());
    MG_CHECK(device_ != nullptr, "a staged communicator needs a device");
  }
  ~StagedComm() override {
    if (staging_) device_->free_host(staging_);  // nothing is in flight: every collective waited
  }
  std::string_view backend() const override { return name_; }
  Device buffers() const override { return Device::cuda; }
  void set_stream(CudaStream s) override { stream_ = s; }

 protected:
  void do_all_reduce_sum(void* buf, int64_t n, DType type) override {
    const size_t bytes = size_t(n) * dtype_size(type);
    char* h = staging(bytes);
    to_host(h, buf, bytes);
    host_.all_reduce_sum(h, n, type);
    to_device(buf, h, bytes);
  }
  void do_reduce_scatter_sum(const void* send, void* recv, int64_t count, DType type) override {
    const size_t block = size_t(count) * dtype_size(type), all = block * size_t(world());
    char* h = staging(all + block);  // [send: world blocks][recv: one block]
    to_host(h, send, all);
    host_.reduce_scatter_sum(h, h + all, count, type);
    to_device(recv, h + all, block);
  }
  void do_all_gather(const void* send, void* recv, int64_t count, DType type) override {
    const size_t block = size_t(count) * dtype_size(type), all = block * size_t(world());
    char* h = staging(block + all);  // [send: one block][recv: world blocks]
    to_host(h, send, block);
    host_.all_gather(h, h + block, count, type);
    to_device(recv, h + block, all);
  }
  void do_broadcast(void* buf, int64_t n, DType type, int root) override {
    const size_t bytes = size_t(n) * dtype_size(type);
    char* h = staging(bytes);
    if (rank() == root) {
      to_host(h, buf, bytes);
      host_.broadcast(h, n, type, root);
    } else {
      begin();
      host_.broadcast(h, n, type, root);
      to_device(buf, h, bytes);
    }
  }
  void do_barrier() override { host_.barrier(); }
  // Host values need no staging.
  void do_host_all_reduce_f64(double* v, int64_t n) override {
    host_.all_reduce_sum(v, n, DType::f64);
  }
  void do_host_all_gather_bytes(const void* send, void* recv, int64_t bytes) override {
    host_.all_gather(send, recv, bytes, DType::u8);
  }

 private:
  // Without a stream nothing orders the collective after the caller's work: wait for the device
  // (as NcclComm does).
  void begin() {
    if (!stream_) device_->synchronize(nullptr);
  }
  // Device → host after the work queued on the stream, waited for: the host collective reads it.
  void to_host(char* host, const void* device, size_t bytes) {
    begin();
    device_->copy_to_host(host, device, bytes, stream_);
    device_->synchronize(stream_);
  }
  // Host → device, waited for: the next collective reuses the host buffer (perhaps on another
  // stream), and callers may read the result at once, as after an NCCL collective.
  void to_device(void* device, const char* host, size_t bytes) {
    device_->copy_to_device(device, host, bytes, stream_);
    device_->synchronize(stream_);
  }
  // The host buffer, grown (never shrunk) to the largest collective: sizes repeat every step.
  char* staging(size_t bytes) {
    if (bytes > capacity_) {
      if (staging_) device_->free_host(staging_);
      staging_ = nullptr;
      capacity_ = 0;
      staging_ = static_cast<char*>(device_->allocate_host(bytes));
      capacity_ = bytes;
    }
    return staging_;
  }

  std::unique_ptr<Comm> owned_;  // null when borrowed
  Comm& host_;
  std::unique_ptr<StagingDevice> device_;
  std::string name_;
  CudaStream stream_ = nullptr;
  char* staging_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace

std::unique_ptr<Comm> make_staged_comm(std::unique_ptr<Comm> host,
                                       std::unique_ptr<StagingDevice> device) {
  MG_CHECK(host != nullptr, "a staged communicator needs a host communicator");
  Comm& ref = *host;
  return std::make_unique<StagedComm>(std::move(host), ref, std::move(device));
}

std::unique_ptr<Comm> make_staged_comm(Comm& host, std::unique_ptr<StagingDevice> device) {
  return std::make_unique<StagedComm>(nullptr, host, std::move(device));
}

}  // namespace muongpt
