#include "train/config.h"

#include <cmath>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "core/toml_reader.h"

namespace muongpt {

namespace {

constexpr const char* kSections[] = {"run",   "model",    "data",      "train",
                                     "optim", "schedule", "telemetry", "device"};

// Sets root[a.b.c] = value, creating tables on the way. The value is parsed as TOML; what does
// not parse is taken as a string (so --set run.name=foo works without quotes).
void apply_override(toml::table& root, const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) fail("--set " + text, "expected section.key=value");
  const std::string path = text.substr(0, eq), value = text.substr(eq + 1);
  const size_t last_dot = path.rfind('.');
  if (last_dot == std::string::npos || last_dot == 0 || last_dot + 1 == path.size())
    fail("--set " + text, "expected section.key=value (the key needs its section)");
  toml::table* table = &root;
  std::stringstream parts(path.substr(0, last_dot));
  for (std::string part; std::getline(parts, part, '.');) {
    toml::node* next = table->get(part);
    if (!next) next = &table->insert_or_assign(part, toml::table{}).first->second;
    if (!next->is_table()) fail("--set " + text, "'", part, "' is not a section");
    table = next->as_table();
  }
  const std::string key = path.substr(last_dot + 1);
  toml::table parsed;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    table->insert_or_assign(key, value);
    return;
  }
  table->insert_or_assign(key, std::move(*parsed.get("v")));
}

std::string quoted(const std::string& s) {
  return toml_string(s);
}

RunConfig parse(toml::table& root, const std::string& file,
                const std::vector<std::string>& overrides) {
  for (const std::string& o : overrides) apply_override(root, o);
  for (const auto& [key, node] : root) {
    bool known = false;
    for (const char* s : kSections) known |= key.str() == s;
    if (!known) fail(file, "unknown section [", key.str(), "]");
  }
  RunConfig c;
  c.file = file;
  {
    TomlSection s = TomlSection::of(root, file, "run");
    c.run.name = s.get_string("name", c.run.name);
    c.run.dir = s.get_string("dir", c.run.dir);
    c.run.seed = s.get_int("seed", c.run.seed);
    s.finish();
    if (c.run.name.empty() || c.run.name.find('/') != std::string::npos || c.run.name == "." ||
        c.run.name == "..")
      s.fail_key("name", "'" + c.run.name + "' is not a directory name");
  }
  c.model = model_config_from_toml(root, file);
  {
    TomlSection s = TomlSection::of(root, file, "data");
    DataConfig& d = c.data;
    d.train = s.get_string("train", d.train);
    d.val = s.get_string("val", d.val);
    d.val_tokens = s.get_int("val_tokens", d.val_tokens);
    d.batch_size = s.get_int("batch_size", d.batch_size);
    d.seq_len = s.get_int("seq_len", d.seq_len);
    d.grad_accum = s.get_int("grad_accum", d.grad_accum);
    d.mode = s.get_string("mode", d.mode);
    s.finish();
    if (d.batch_size <= 0) s.fail_key("batch_size", "must be positive");
    if (d.grad_accum <= 0) s.fail_key("grad_accum", "must be positive");
    if (d.val_tokens < 0) s.fail_key("val_tokens", "must be >= 0");
    if (d.seq_len < 0 || d.seq_len > c.model.seq_len)
      s.fail_key("seq_len", "must be in [0, [model] seq_len = " + std::to_string(c.model.seq_len) +
                                "] (0 = the model's)");
    if (d.mode != "contiguous" && d.mode != "bos-aligned")
      s.fail_key("mode", "expected \"contiguous\" or \"bos-aligned\", found \"" + d.mode + "\"");
  }
  {
    TomlSection s = TomlSection::of(root, file, "train");
    TrainConfig& t = c.train;
    t.steps = s.get_int("steps", t.steps);
    t.log_every = s.get_int("log_every", t.log_every);
    t.eval_every = s.get_int("eval_every", t.eval_every);
    t.checkpoint_every = s.get_int("checkpoint_every", t.checkpoint_every);
    t.keep_checkpoints = s.get_int("keep_checkpoints", t.keep_checkpoints);
    t.clip = s.get_float("clip", t.clip);
    s.finish();
    if (t.steps <= 0) s.fail_key("steps", "must be positive");
    if (t.log_every <= 0) s.fail_key("log_every", "must be positive");
    if (t.eval_every < 0) s.fail_key("eval_every", "must be >= 0 (0 = only at the end)");
    if (t.checkpoint_every < 0)
      s.fail_key("checkpoint_every", "must be >= 0 (0 = only at the end)");
    if (t.keep_checkpoints <= 0) s.fail_key("keep_checkpoints", "must be at least 1");
    if (!(t.clip >= 0)) s.fail_key("clip", "must be >= 0 (0 = off)");
  }
  c.optim = optim_config_from_toml(root, file);
  c.schedule = schedule_config_from_toml(root, file);
  {
    TomlSection s = TomlSection::of(root, file, "telemetry");
    c.telemetry.every = s.get_int("every", c.telemetry.every);
    s.finish();
    if (c.telemetry.every < 0) s.fail_key("every", "must be >= 0 (0 = off)");
  }
  {
    TomlSection s = TomlSection::of(root, file, "device");
    c.device.backend = s.get_string("backend", c.device.backend);
    c.device.precision = s.get_string("precision", c.device.precision);
    c.device.attention = s.get_string("attention", c.device.attention);
    c.device.comm_timeout = s.get_float("comm_timeout", c.device.comm_timeout);
    c.device.peak_tflops = s.get_float("peak_tflops", c.device.peak_tflops);
    s.finish();
    if (c.device.precision != "bf16" && c.device.precision != "fp32")
      s.fail_key("precision",
                 "expected \"bf16\" or \"fp32\", found \"" + c.device.precision + "\"");
    if (c.device.attention != "straightforward" && c.device.attention != "flash")
      s.fail_key("attention",
                 "expected \"straightforward\" or \"flash\", found \"" + c.device.attention + "\"");
    if (c.device.attention == "flash" && c.device.precision != "bf16")
      s.fail_key("attention",
                 "\"flash\" runs in bf16 only (precision is \"" + c.device.precision + "\")");
    if (!(c.device.comm_timeout >= 0))
      s.fail_key("comm_timeout", "must be >= 0 seconds (0 = wait forever)");
    if (!(c.device.peak_tflops >= 0) || !std::isfinite(c.device.peak_tflops))
      s.fail_key("peak_tflops", "must be a finite number >= 0 (0 = look the GPU up)");
    if (c.device.backend != "auto" && c.device.backend != "cpu" && c.device.backend != "cuda")
      s.fail_key("backend",
                 "expected \"auto\", \"cpu\" or \"cuda\", found \"" + c.device.backend + "\"");
  }
  return c;
}

}  // namespace

std::string RunConfig::run_dir() const {
  return (std::filesystem::path(run.dir) / run.name).string();
}

std::string RunConfig::to_toml() const {
  std::ostringstream os;
  os << "# resolved config: every key spelled out (docs/config.md)\n\n"
     << "[run]\nname = " << quoted(run.name) << "\ndir = " << quoted(run.dir)
     << "\nseed = " << run.seed << "\n\n"
     << model.to_toml() << "\n"
     << "[data]\ntrain = " << quoted(data.train) << "\nval = " << quoted(data.val)
     << "\nval_tokens = " << data.val_tokens << "\nbatch_size = " << data.batch_size
     << "\nseq_len = " << data.seq_len << "\ngrad_accum = " << data.grad_accum
     << "\nmode = " << quoted(data.mode) << "\n\n"
     << "[train]\nsteps = " << train.steps << "\nlog_every = " << train.log_every
     << "\neval_every = " << train.eval_every << "\ncheckpoint_every = " << train.checkpoint_every
     << "\nkeep_checkpoints = " << train.keep_checkpoints
     << "\nclip = " << toml_float(train.clip) << "\n\n"
     << optim.to_toml() << "\n"
     << schedule.to_toml() << "\n"
     << "[telemetry]\nevery = " << telemetry.every << "\n\n"
     << "[device]\nbackend = " << quoted(device.backend)
     << "\nprecision = " << quoted(device.precision) << "\nattention = " << quoted(device.attention)
     << "\ncomm_timeout = " << device.comm_timeout
     << "\npeak_tflops = " << toml_float(device.peak_tflops) << "\n";
  return os.str();
}

RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides) {
  toml::table root = parse_toml_file(path);
  return parse(root, path, overrides);
}

RunConfig run_config_from_string(const std::string& toml_text, const std::string& name) {
  toml::table root = parse_toml_string(toml_text, name);
  return parse(root, name, {});
}

}  // namespace muongpt
