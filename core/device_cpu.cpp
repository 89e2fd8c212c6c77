// Device queries and device memory in a build without CUDA: no devices, and a clear error
// for anything that needs one.
#ifndef MUONGPT_HAVE_CUDA
#include "core/arena.h"
#include "core/device.h"
#include "core/error.h"

namespace muongpt {

bool built_with_cuda() {
  return false;
}
int cuda_device_count() {
  return 0;
}
DeviceInfo cuda_device_info(int) {
  fail("cuda", "this muongpt was built without CUDA support");
}
std::string describe_devices() {
  return "built without CUDA support";
}
size_t cuda_free_memory() {
  return 0;
}
void cuda_set_device(int) {
  fail("cuda", "this muongpt was built without CUDA support");
}
void cuda_axpy(float, const float*, float*, int64_t) {
  fail("cuda", "this muongpt was built without CUDA support");
}
void* device_alloc(size_t) {
  fail("cuda", "this muongpt was built without CUDA support");
}
void device_free(void*) {}
void device_memset_zero(void*, size_t) {
  fail("cuda", "this muongpt was built without CUDA support");
}

}  // namespace muongpt
#endif
