// What the training loop, checkpoints and telemetry need from a model, whatever device it runs
// on: the CPU Gpt<float>, or GptCuda (fp32 or bf16) on the GPU. Everything here speaks host
// memory, except param_slots() and the telemetry hooks (the optimizer and the telemetry's linear
// algebra work where the model lives).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"
#include "model/gpt.h"
#include "model/params.h"
#include "optim/optimizer.h"
#include "train/config.h"
#include "train/spectra.h"

namespace muongpt {

class TrainModel {
 public:
  virtual ~TrainModel() = default;

  virtual const ModelConfig& config() const = 0;
  virtual const std::vector<ParamSpec>& specs() const = 0;
  virtual std::string device() const = 0;  // "cpu", "cuda:0 bf16", ...
  // The device's dense peak in TFLOP/s at the model's precision (gpu_peak_tflops), 0 when unknown
  // (every CPU).
  virtual double peak_tflops() const = 0;
  virtual std::string describe_memory() const = 0;  // one line for the log
  virtual size_t memory_bytes() const = 0;

  // Slots for Optimizer::create (device pointers on the GPU).
  virtual std::vector<ParamSlot> param_slots() = 0;
  virtual void init_params(uint64_t seed) = 0;
  // values: [P] host floats in specs() order (a checkpoint's weights).
  virtual void set_params(const std::vector<float>& values) = 0;

  // idx, targets: [B, T] host token ids. Mean cross-entropy of the batch.
  virtual double forward(const int32_t* idx, const int32_t* targets) = 0;
  virtual void backward(float loss_scale) = 0;
  virtual void zero_grads() = 0;
  virtual void synchronize() = 0;  // waits for queued GPU work (timing); nothing on the CPU
  virtual void scale_grads(float factor) = 0;  // clipping
  // Name of the first parameter whose gradient (or value) is NaN/Inf, or "".
  virtual std::string first_nonfinite(bool grads) = 0;

  // Host views, valid until the next call of the same function (the GPU model downloads into
  // buffers it keeps): every parameter flat [P] (checkpoints) and every gradient flat [P].
  virtual const float* params_host() = 0;
  virtual const float* grads_host() = 0;

  // Telemetry: an activation of the last forward as [B·T, width] in the model's memory and
  // storage type (the names of Gpt::activation()), and the linear algebra that runs there.
  virtual Tensor activation(std::string_view kind, int64_t layer) = 0;
  virtual std::unique_ptr<Spectra> make_spectra(const std::vector<int64_t>& gram_widths) = 0;
};

// The model the config asks for: [device] backend (cpu | cuda | auto: cuda when a GPU is
// visible), precision (bf16 | fp32) and attention (straightforward | flash), the last two CUDA
// only, with micro-batch B and sequence length T. `local_rank` picks the GPU. Errors name `where`
// (the config file).
std::unique_ptr<TrainModel> make_train_model(const ModelConfig& cfg, int64_t batch, int64_t seq,
                                             const DeviceConfig& device, int local_rank,
                                             const std::string& where);

// A CPU model seen through the interface without taking it over (tests, the bench); the model
// must outlive the view.
std::unique_ptr<TrainModel> view_cpu_model(Gpt<float>& model);

// The peak an MFU is measured against, TFLOP/s per device: [device] peak_tflops when set, else
// the model's device's (0: unknown, no MFU).
double run_peak_tflops(const DeviceConfig& device, const TrainModel& model);

// "cpu" or "cuda" for a [device] backend value ("auto" resolved).
std::string resolve_backend(const std::string& backend);

}  // namespace muongpt
