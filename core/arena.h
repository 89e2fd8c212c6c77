// One allocation for everything a model needs (parameters, gradients, activations, scratch), so
// nothing is allocated inside a training step. Users describe their layout once as a function of
// an Arena; plan_arena() runs it against a counting arena to learn the size, allocates exactly
// that much, and runs it again to hand out the real tensors.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <utility>

#include "core/tensor.h"

namespace muongpt {

// Device memory; implemented in device_memory.cu, or failing cleanly in a build without CUDA.
void* device_alloc(size_t bytes);
void device_free(void* p);
void device_memset_zero(void* p, size_t bytes);

class Arena {
 public:
  static constexpr size_t kAlign = 256;  // bytes; enough for vector loads and cuBLASLt

  // An arena that only counts: it hands out tensors with null data.
  static Arena counting(Device device) { return Arena(device); }
  // Allocates `bytes` once, zero-filled.
  Arena(Device device, size_t bytes);
  Arena(Arena&&) = default;
  Arena& operator=(Arena&&) = default;

  Tensor alloc(DType dtype, std::initializer_list<int64_t> shape);
  void* alloc_bytes(size_t bytes);

  Device device() const { return device_; }
  size_t used() const { return used_; }
  size_t capacity() const { return capacity_; }
  bool is_counting() const { return !base_; }

 private:
  explicit Arena(Device device) : device_(device) {}
  struct Free {
    Device device;
    void operator()(char* p) const;
  };
  Device device_;
  std::unique_ptr<char, Free> base_{nullptr, Free{Device::cpu}};
  size_t capacity_ = 0;
  size_t used_ = 0;
};

// Runs `layout(arena)` twice: once counting, once on a single allocation of the counted size.
template <typename Layout>
Arena plan_arena(Device device, Layout&& layout) {
  Arena counter = Arena::counting(device);
  layout(counter);
  Arena arena(device, counter.used());
  layout(arena);
  return arena;
}

}  // namespace muongpt
