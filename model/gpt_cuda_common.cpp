// The pieces of model/gpt_cuda.h that need no GPU, built in every configuration, and — in a build
// without CUDA — a GptCuda whose constructor says so (the rest is unreachable), so that callers
// compile and link the same way in both builds. The model itself is in model/gpt_cuda.cpp.
#include <cstdio>
#include <string>

#include "core/error.h"
#include "model/gpt_cuda.h"

namespace muongpt {

std::string_view precision_name(Precision p) {
  return p == Precision::bf16 ? "bf16" : "fp32";
}

Precision precision_from_name(std::string_view name, const std::string& where) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  fail(where, "precision '", name, "' is not one of: fp32, bf16");
}

std::string_view attention_name(Attention a) {
  return a == Attention::flash ? "flash" : "straightforward";
}

Attention attention_from_name(std::string_view name, const std::string& where) {
  if (name == "straightforward") return Attention::straightforward;
  if (name == "flash") return Attention::flash;
  fail(where, "attention '", name, "' is not one of: straightforward, flash");
}

std::string GpuMemory::describe() const {
  auto mib = [](size_t bytes) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / (1024.0 * 1024.0));
    return std::string(buf);
  };
  return "GPU arena " + mib(total()) + ": params " + mib(params) + ", grads " + mib(grads) +
         ", working " + mib(working) + ", activations " + mib(activations) + ", scratch " +
         mib(scratch);
}

}  // namespace muongpt

#ifndef MUONGPT_HAVE_CUDA
namespace muongpt {

struct GptCuda::Impl {};

namespace {
[[noreturn]] void no_cuda() {
  fail("cuda", "this muongpt was built without CUDA support: the GPU model is not available");
}
}  // namespace

GptCuda::GptCuda(const ModelConfig&, int64_t, int64_t, Precision, Attention) {
  no_cuda();
}
GptCuda::GptCuda(const ModelConfig&, int64_t, int64_t, Precision, CudaStream, Attention) {
  no_cuda();
}
GptCuda::~GptCuda() = default;
// A GptCuda cannot be constructed here, so none of these can be reached.
const ModelConfig& GptCuda::config() const {
  no_cuda();
}
int64_t GptCuda::batch() const {
  no_cuda();
}
int64_t GptCuda::seq() const {
  no_cuda();
}
Precision GptCuda::precision() const {
  no_cuda();
}
Attention GptCuda::attention() const {
  no_cuda();
}
CudaStream GptCuda::stream() const {
  no_cuda();
}
size_t GptCuda::arena_bytes() const {
  no_cuda();
}
const GpuMemory& GptCuda::memory() const {
  no_cuda();
}
const std::vector<ParamSpec>& GptCuda::specs() const {
  no_cuda();
}
int GptCuda::find(std::string_view) const {
  no_cuda();
}
Tensor GptCuda::param(size_t) const {
  no_cuda();
}
Tensor GptCuda::grad(size_t) const {
  no_cuda();
}
Tensor GptCuda::params_flat() const {
  no_cuda();
}
Tensor GptCuda::grads_flat() const {
  no_cuda();
}
Tensor GptCuda::working_flat() const {
  no_cuda();
}
void GptCuda::init_params(uint64_t) {
  no_cuda();
}
void GptCuda::set_params_from_host(const float*) {
  no_cuda();
}
void GptCuda::params_to_host(float*) const {
  no_cuda();
}
void GptCuda::grads_to_host(float*) const {
  no_cuda();
}
void GptCuda::sync_working_weights() {
  no_cuda();
}
double GptCuda::forward(const int32_t*, const int32_t*) {
  no_cuda();
}
void GptCuda::backward(float) {
  no_cuda();
}
Tensor GptCuda::logits() const {
  no_cuda();
}
void GptCuda::logits_to_host(float*) const {
  no_cuda();
}
void GptCuda::zero_grads() {
  no_cuda();
}
double GptCuda::grad_norm() const {
  no_cuda();
}
std::vector<ParamSlot> GptCuda::param_slots_cuda() const {
  no_cuda();
}
Tensor GptCuda::activation(std::string_view, int64_t) const {
  no_cuda();
}
void GptCuda::download(const Tensor&, float*) const {
  no_cuda();
}

}  // namespace muongpt
#endif  // MUONGPT_HAVE_CUDA
