#include "train/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "core/toml_reader.h"
#include "train/fault.h"

namespace muongpt {

namespace fs = std::filesystem;

namespace {

std::string step_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%06lld", static_cast<long long>(step));
  return buf;
}

// Flushes a file or directory to disk (errors name it).
void fsync_path(const fs::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY);
  if (fd < 0) fail(p.string(), "cannot open to flush it to disk");
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) fail(p.string(), "fsync failed");
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) fail(p.string(), "write failed (disk full?)");
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(p.string(), "missing or unreadable");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

fs::path checkpoints_dir(const std::string& run_dir) {
  return fs::path(run_dir) / "checkpoints";
}

void remove_temporaries(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().starts_with(".tmp")) fs::remove_all(e.path(), ec);
}

}  // namespace

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  std::vector<std::string> out;
  std::error_code ec;
  const fs::path dir = checkpoints_dir(run_dir);
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.starts_with("step_") && name.size() > 5 &&
        name.find_first_not_of("0123456789", 5) == std::string::npos)
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());  // zero-padded step numbers sort in order
  return out;
}

std::vector<std::string> set_aside_checkpoints_after(const std::string& run_dir, int64_t step) {
  std::vector<std::string> moved;
  for (const std::string& c : list_checkpoints(run_dir)) {
    const fs::path p(c);
    if (std::stoll(p.filename().string().substr(5)) <= step) continue;
    const fs::path to = p.parent_path() / ("abandoned_" + p.filename().string());
    std::error_code ec;
    fs::remove_all(to, ec);
    fs::rename(p, to, ec);
    if (ec) fail(c, "cannot set aside (resuming from an older checkpoint): ", ec.message());
    moved.push_back(to.string());
  }
  return moved;
}

std::string latest_checkpoint(const std::string& run_dir) {
  auto all = list_checkpoints(run_dir);
  return all.empty() ? "" : all.back();
}

std::string save_checkpoint(const std::string& run_dir, int64_t step,
                            const std::vector<ParamSpec>& specs, const float* params,
                            const CheckpointContents& contents, int64_t keep) {
  const fs::path dir = checkpoints_dir(run_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(dir.string(), "cannot create: ", ec.message());
  remove_temporaries(dir);
  const fs::path final_dir = dir / step_name(step);
  const fs::path tmp = dir / (".tmp_" + step_name(step) + "_" + std::to_string(::getpid()));
  fs::create_directory(tmp, ec);
  if (ec) fail(tmp.string(), "cannot create: ", ec.message());

  std::vector<SafetensorsTensor> weights;
  for (const ParamSpec& s : specs) {
    weights.push_back({s.name, DType::f32, s.shape, params});
    params += s.numel();
  }
  try {  // a failed write (a full disk) leaves nothing behind to keep the disk full
    write_safetensors((tmp / "model.safetensors").string(), weights,
                      {{"format", "muongpt"}, {"step", std::to_string(step)}});
    fault_point("checkpoint", step);
    write_safetensors((tmp / "optimizer.safetensors").string(), contents.optimizer_tensors);
    nlohmann::json state = contents.state;
    state["version"] = kCheckpointVersion;
    state["step"] = step;
    write_text(tmp / "state.json", state.dump(1) + "\n");
    write_text(tmp / "config.toml", contents.config_toml);
    for (const char* f :
         {"model.safetensors", "optimizer.safetensors", "state.json", "config.toml"})
      fsync_path(tmp / f);
    fsync_path(tmp);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }

  if (fs::exists(final_dir)) {  // re-running a step (e.g. after a resume): replace it
    const fs::path old = dir / (".tmp_old_" + step_name(step));
    fs::rename(final_dir, old, ec);
    if (ec) fail(final_dir.string(), "cannot replace: ", ec.message());
  }
  fs::rename(tmp, final_dir, ec);
  if (ec)
    fail(final_dir.string(), "cannot rename the finished checkpoint into place: ", ec.message());
  fsync_path(dir);
  remove_temporaries(dir);

  auto all = list_checkpoints(run_dir);
  for (size_t i = 0; i + static_cast<size_t>(std::max<int64_t>(keep, 1)) < all.size(); ++i)
    fs::remove_all(all[i], ec);
  return final_dir.string();
}

Checkpoint::Checkpoint(const std::string& dir)
    : dir_(dir),
      model_((fs::path(dir) / "model.safetensors").string()),
      optimizer_((fs::path(dir) / "optimizer.safetensors").string()) {
  const fs::path state_path = fs::path(dir) / "state.json";
  state_ = nlohmann::json::parse(read_text(state_path), nullptr, /*allow_exceptions=*/false);
  if (state_.is_discarded()) fail(state_path.string(), "not valid JSON (truncated or damaged)");
  if (!state_.is_object() || !state_.contains("version") || !state_.contains("step"))
    fail(state_path.string(), "not a muongpt checkpoint state (no version/step)");
  if (state_["version"] != kCheckpointVersion)
    fail(state_path.string(), "checkpoint format version ", state_["version"].dump(),
         ", this muongpt reads version ", kCheckpointVersion);
  for (const char* key : {"step", "tokens"})
    if (!state_.contains(key) || !state_[key].is_number_integer() || state_[key].get<int64_t>() < 0)
      fail(state_path.string(), "'", key, "' is missing or not a whole number >= 0");
  if (state_.contains("elapsed_s") && !state_["elapsed_s"].is_number())
    fail(state_path.string(), "'elapsed_s' is not a number");
  if (!state_.contains("optimizer") || !state_["optimizer"].is_object())
    fail(state_path.string(), "'optimizer' is missing or not an object");
  config_toml_ = read_text(fs::path(dir) / "config.toml");
}

const nlohmann::json& Checkpoint::loader_json() const {
  if (!state_.contains("loader") || !state_["loader"].is_object())
    fail((fs::path(dir_) / "state.json").string(),
         "has no data loader position (a checkpoint of a run on random token ids)");
  return state_["loader"];
}

ModelConfig Checkpoint::model_config() const {
  const std::string where = (fs::path(dir_) / "config.toml").string();
  return model_config_from_toml(parse_toml_string(config_toml_, where), where);
}

std::vector<float> Checkpoint::weights(const ModelConfig& cfg) const {
  const auto specs = param_specs(cfg);
  std::vector<float> flat;
  flat.reserve(static_cast<size_t>(param_count(specs)));
  for (const ParamSpec& s : specs) {
    if (!model_.has(s.name))
      fail(model_.path(), "has no tensor '", s.name, "' (checkpoint of a different model?)");
    const SafetensorsEntry& e = model_.entry(s.name);
    if (e.shape != s.shape)
      fail(model_.path(), "tensor '", s.name, "' has shape ",
           ParamSpec{s.name, e.shape}.shape_str(), ", the model needs ", s.shape_str());
    if (e.dtype != DType::f32)
      fail(model_.path(), "tensor '", s.name, "' is ", dtype_name(e.dtype), ", expected F32");
    auto v = model_.read<float>(s.name);
    if (!std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }))
      fail(model_.path(), "tensor '", s.name, "' holds a NaN or an Inf");
    flat.insert(flat.end(), v.begin(), v.end());
  }
  if (model_.names().size() != specs.size())
    fail(model_.path(), "holds ", model_.names().size(), " tensors, the model has ", specs.size());
  return flat;
}

void check_same_model(const ModelConfig& a, const ModelConfig& b, const std::string& where) {
  const std::vector<std::string> there = model_config_keys().assignments(a),
                                 here = model_config_keys().assignments(b);
  for (size_t i = 0; i < there.size(); ++i)
    if (there[i] != here[i])
      fail(where, "checkpoint was written for a different model: ", there[i], " there, ", here[i],
           " in this config");
}

}  // namespace muongpt
