#include "train/train_model.h"

#include <cmath>
#include <cstdio>

#include "core/device.h"
#include "core/error.h"
#include "model/gpt.h"
#include "model/gpt_cuda.h"

#ifdef MUONGPT_HAVE_CUDA
#include "core/arena.h"
#include "core/cuda_util.h"
#include "train/spectra_cuda.h"
#endif

namespace muongpt {

namespace {

// First parameter (specs order) with a NaN/Inf in flat [P] host values, or "".
std::string first_nonfinite_in(const std::vector<ParamSpec>& specs, const float* flat) {
  int64_t at = 0;
  for (const ParamSpec& s : specs) {
    for (int64_t j = 0; j < s.numel(); ++j)
      if (!std::isfinite(flat[at + j])) return s.name;
    at += s.numel();
  }
  return "";
}

// The CPU model, owned or borrowed.
class CpuTrainModel final : public TrainModel {
 public:
  CpuTrainModel(const ModelConfig& cfg, int64_t batch, int64_t seq)
      : owned_(std::make_unique<Gpt<float>>(cfg, batch, seq)), model_(*owned_) {}
  explicit CpuTrainModel(Gpt<float>& model) : model_(model) {}

  const ModelConfig& config() const override { return model_.config(); }
  const std::vector<ParamSpec>& specs() const override { return model_.specs(); }
  std::string device() const override { return "cpu"; }
  double peak_tflops() const override { return 0; }
  std::string describe_memory() const override {
    char buf[96];
    std::snprintf(buf, sizeof buf, "arena %.1f MiB", model_.arena_bytes() / 1048576.0);
    return buf;
  }
  size_t memory_bytes() const override { return model_.arena_bytes(); }
  std::vector<ParamSlot> param_slots() override { return muongpt::param_slots(model_); }
  void init_params(uint64_t seed) override { model_.init_params(seed); }
  void set_params(const std::vector<float>& values) override {
    std::copy(values.begin(), values.end(), model_.params_flat().data<float>());
  }
  double forward(const int32_t* idx, const int32_t* targets) override {
    return model_.forward(idx, targets);
  }
  void backward(float loss_scale) override { model_.backward(loss_scale); }
  void zero_grads() override { model_.zero_grads(); }
  void synchronize() override {}
  void scale_grads(float factor) override {
    float* g = model_.grads_flat().data<float>();
    for (int64_t i = 0; i < model_.grads_flat().numel(); ++i) g[i] *= factor;
  }
  std::string first_nonfinite(bool grads) override {
    return first_nonfinite_in(specs(), grads ? grads_host() : params_host());
  }
  const float* params_host() override { return model_.params_flat().data<float>(); }
  const float* grads_host() override { return model_.grads_flat().data<float>(); }
  Tensor activation(std::string_view kind, int64_t layer) override {
    return model_.activation(kind, layer);
  }
  std::unique_ptr<Spectra> make_spectra(const std::vector<int64_t>& gram_widths) override {
    return make_cpu_spectra(gram_widths);
  }

 private:
  std::unique_ptr<Gpt<float>> owned_;
  Gpt<float>& model_;
};

#ifdef MUONGPT_HAVE_CUDA
// The GPU model behind the same interface. Host mirrors (parameters, gradients) are filled only
// when asked for: checkpoints and the non-finite check's error message.
class CudaTrainModel final : public TrainModel {
 public:
  CudaTrainModel(const ModelConfig& cfg, int64_t batch, int64_t seq, Precision precision,
                 Attention attention, int gpu)
      : gpu_(gpu), model_(cfg, batch, seq, precision, attention) {
    flag_ = plan_arena(Device::cuda, [&](Arena& a) { flag_dev_ = a.alloc_bytes(sizeof(int)); });
  }

  const ModelConfig& config() const override { return model_.config(); }
  const std::vector<ParamSpec>& specs() const override { return model_.specs(); }
  std::string device() const override {
    return "cuda:" + std::to_string(gpu_) + " " + std::string(precision_name(model_.precision())) +
           (model_.attention() == Attention::flash ? " flash" : "");
  }
  double peak_tflops() const override {
    return gpu_peak_tflops(cuda_device_info(gpu_).name, model_.precision() == Precision::bf16);
  }
  std::string describe_memory() const override { return model_.describe_memory(); }
  size_t memory_bytes() const override { return model_.arena_bytes(); }
  std::vector<ParamSlot> param_slots() override { return model_.param_slots_cuda(); }
  void init_params(uint64_t seed) override { model_.init_params(seed); }
  void set_params(const std::vector<float>& values) override {
    model_.set_params_from_host(values.data());
  }
  double forward(const int32_t* idx, const int32_t* targets) override {
    return model_.forward(idx, targets);
  }
  void backward(float loss_scale) override { model_.backward(loss_scale); }
  void zero_grads() override { model_.zero_grads(); }
  void synchronize() override { stream_sync(model_.stream()); }
  void scale_grads(float factor) override {
    scale_f32(model_.grads_flat().data<float>(), factor, model_.grads_flat().numel(),
              model_.stream());
  }
  std::string first_nonfinite(bool grads) override {
    const Tensor t = grads ? model_.grads_flat() : model_.params_flat();
    int finite = 0;
    all_finite_f32(t.data<float>(), t.numel(), static_cast<int*>(flag_dev_), model_.stream());
    copy_to_host(&finite, flag_dev_, sizeof finite, model_.stream());
    stream_sync(model_.stream());
    if (finite) return "";
    return first_nonfinite_in(specs(), grads ? grads_host() : params_host());
  }
  const float* params_host() override {
    params_.resize(size_t(model_.params_flat().numel()));
    model_.params_to_host(params_.data());
    return params_.data();
  }
  const float* grads_host() override {
    grads_.resize(size_t(model_.grads_flat().numel()));
    model_.grads_to_host(grads_.data());
    return grads_.data();
  }
  Tensor activation(std::string_view kind, int64_t layer) override {
    return model_.activation(kind, layer);
  }
  std::unique_ptr<Spectra> make_spectra(const std::vector<int64_t>& gram_widths) override {
    std::vector<std::pair<int64_t, int64_t>> matrices;
    for (const ParamSpec& s : model_.specs())
      if (s.shape.size() == 2) matrices.emplace_back(s.shape[0], s.shape[1]);
    return make_cuda_spectra(gram_widths, matrices, model_.stream());
  }

 private:
  int gpu_;
  GptCuda model_;
  Arena flag_ = Arena::counting(Device::cuda);  // one int on the device: the finiteness flag
  void* flag_dev_ = nullptr;
  std::vector<float> params_, grads_;
};
#endif

}  // namespace

std::unique_ptr<TrainModel> view_cpu_model(Gpt<float>& model) {
  return std::make_unique<CpuTrainModel>(model);
}

double run_peak_tflops(const DeviceConfig& device, const TrainModel& model) {
  return device.peak_tflops > 0 ? device.peak_tflops : model.peak_tflops();
}

std::string resolve_backend(const std::string& backend) {
  if (backend != "auto") return backend;
  return built_with_cuda() && cuda_device_count() > 0 ? "cuda" : "cpu";
}

std::unique_ptr<TrainModel> make_train_model(const ModelConfig& cfg, int64_t batch, int64_t seq,
                                             const DeviceConfig& device, int local_rank,
                                             const std::string& where) {
  const std::string use = resolve_backend(device.backend);
  if (use == "cpu") return std::make_unique<CpuTrainModel>(cfg, batch, seq);
  const Precision p = precision_from_name(device.precision, where + ": [device] precision");
  const Attention attention = attention_from_name(device.attention, where + ": [device] attention");
  if (!built_with_cuda())
    fail(where, "[device] backend = \"cuda\": this muongpt was built without CUDA support");
  if (cuda_device_count() == 0)
    fail(where, "[device] backend = \"cuda\" but no GPU is visible (", describe_devices(), ")");
#ifdef MUONGPT_HAVE_CUDA
  const int gpu = local_rank % cuda_device_count();
  cuda_set_device(gpu);
  return std::make_unique<CudaTrainModel>(cfg, batch, seq, p, attention, gpu);
#else
  (void)p;
  (void)attention;
  (void)local_rank;
  fail(where, "[device] backend = \"cuda\": this muongpt was built without CUDA support");
#endif
}

}  // namespace muongpt
