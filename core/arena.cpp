#include "core/arena.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace muongpt {

void Arena::Free::operator()(char* p) const {
  if (device == Device::cuda)
    device_free(p);
  else
    std::free(p);
}

Arena::Arena(Device device, size_t bytes)
    : device_(device), base_(nullptr, Free{device}), capacity_(bytes) {
  size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  if (rounded == 0) rounded = kAlign;
  char* p = nullptr;
  if (device == Device::cuda) {
    p = static_cast<char*>(device_alloc(rounded));
    device_memset_zero(p, rounded);
  } else {
    p = static_cast<char*>(std::aligned_alloc(kAlign, rounded));
    if (!p)
      fail("arena", "out of host memory allocating ", rounded, " bytes (",
           rounded / (1024.0 * 1024.0), " MiB)");
    std::memset(p, 0, rounded);
  }
  base_.reset(p);
}

void* Arena::alloc_bytes(size_t bytes) {
  size_t offset = (used_ + kAlign - 1) / kAlign * kAlign;
  if (!is_counting() && offset + bytes > capacity_)
    fail("arena", "layout asks for more than the planned ", capacity_,
         " bytes (the layout function must be deterministic)");
  used_ = offset + bytes;
  return is_counting() ? nullptr : base_.get() + offset;
}

Tensor Arena::alloc(DType dtype, std::initializer_list<int64_t> shape) {
  Tensor shaped(nullptr, dtype, shape, device_);
  return Tensor(alloc_bytes(shaped.nbytes()), dtype, shape, device_);
}

}  // namespace muongpt
