#include "core/tensor.h"

#include <sstream>

namespace muongpt {

std::string_view device_name(Device d) {
  return d == Device::cpu ? "cpu" : "cuda";
}

bool dtype_from_name(std::string_view name, DType* out) {
  for (DType t :
       {DType::f64, DType::f32, DType::bf16, DType::i64, DType::i32, DType::u16, DType::u8}) {
    if (dtype_name(t) == name) {
      *out = t;
      return true;
    }
  }
  return false;
}

Tensor::Tensor(void* data, DType dtype, std::span<const int64_t> shape, Device device)
    : data_(data), dtype_(dtype), device_(device), ndim_(static_cast<int>(shape.size())) {
  MG_CHECK(shape.size() <= kMaxDims, "tensor with ", shape.size(), " dimensions");
  int64_t stride = 1;
  for (int i = ndim_ - 1; i >= 0; --i) {
    MG_CHECK(shape[i] >= 0, "negative dimension ", shape[i]);
    shape_[i] = shape[i];
    strides_[i] = stride;
    stride *= shape[i];
  }
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= shape_[i];
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t stride = 1;
  for (int i = ndim_ - 1; i >= 0; --i) {
    if (shape_[i] != 1 && strides_[i] != stride) return false;
    stride *= shape_[i];
  }
  return true;
}

Tensor Tensor::view(std::initializer_list<int64_t> shape) const {
  MG_CHECK(is_contiguous(), "view of a non-contiguous tensor ", shape_str());
  Tensor t(data_, dtype_, shape, device_);
  MG_CHECK(t.numel() == numel(), "view ", t.shape_str(), " of ", shape_str());
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  MG_CHECK(ndim_ >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice [", begin, ", ",
           end, ") of ", shape_str());
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.data_ =
      static_cast<char*>(data_) + static_cast<size_t>(begin * strides_[0]) * dtype_size(dtype_);
  return t;
}

std::string Tensor::shape_str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < ndim_; ++i) os << (i ? ", " : "") << shape_[i];
  os << ']';
  return os.str();
}

}  // namespace muongpt
