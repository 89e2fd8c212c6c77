// A Tensor is a typed, shaped, strided view of memory that lives elsewhere (normally an Arena).
// It never owns or allocates, so making, copying and reshaping tensors inside a training step is
// free. Shapes have at most kMaxDims dimensions; strides are in elements.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>

#include "core/dtype.h"
#include "core/error.h"

namespace muongpt {

enum class Device : uint8_t { cpu, cuda };
std::string_view device_name(Device d);

class Tensor {
 public:
  static constexpr int kMaxDims = 4;

  Tensor() = default;
  // A contiguous (row-major) view of `data`.
  Tensor(void* data, DType dtype, std::span<const int64_t> shape, Device device = Device::cpu);
  Tensor(void* data, DType dtype, std::initializer_list<int64_t> shape, Device device = Device::cpu)
      : Tensor(data, dtype, std::span<const int64_t>(shape.begin(), shape.size()), device) {}

  bool defined() const { return data_ != nullptr || numel() == 0; }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  int ndim() const { return ndim_; }
  int64_t size(int i) const { return shape_[axis(i)]; }
  int64_t stride(int i) const { return strides_[axis(i)]; }
  std::span<const int64_t> shape() const { return {shape_.data(), static_cast<size_t>(ndim_)}; }
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  bool is_contiguous() const;

  void* raw() const { return data_; }
  // Typed pointer; the element type must match the tensor's dtype.
  template <typename T>
  T* data() const {
    MG_CHECK(dtype_of<T>() == dtype_, "tensor is ", dtype_name(dtype_), ", asked for ",
             dtype_name(dtype_of<T>()));
    return static_cast<T*>(data_);
  }

  // The same memory with another contiguous shape of equal element count.
  Tensor view(std::initializer_list<int64_t> shape) const;
  // Rows [begin, end) of the first dimension.
  Tensor slice(int64_t begin, int64_t end) const;

  std::string shape_str() const;  // "[2, 16, 64]"

 private:
  int axis(int i) const {
    if (i < 0) i += ndim_;
    MG_CHECK(i >= 0 && i < ndim_, "axis ", i, " of a ", ndim_, "-d tensor");
    return i;
  }

  void* data_ = nullptr;
  DType dtype_ = DType::f32;
  Device device_ = Device::cpu;
  int ndim_ = 0;
  std::array<int64_t, kMaxDims> shape_{};
  std::array<int64_t, kMaxDims> strides_{};
};

}  // namespace muongpt
