// `muongpt sweep FILE [--dry-run] [--print-commands [--launcher CMD]]`: runs the variants of a
// base config as ordinary run directories, skipping finished ones and resuming interrupted
// ones; a variant that fails is recorded and the sweep goes on (docs/sweeps.md).
#include "tools/sweep.h"

#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/comm.h"
#include "core/config_table.h"
#include "core/error.h"
#include "core/toml_reader.h"
#include "tools/commands.h"
#include "train/checkpoint.h"
#include "train/job.h"
#include "train/trainer.h"
#include "train/training.h"

namespace muongpt {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> strings_of(TomlSection& s, std::string_view key) {
  std::vector<std::string> out;
  const toml::node* n = s.get_node(key);
  if (!n) return out;
  const toml::array* arr = n->as_array();
  if (!arr) s.fail_key(key, "expected an array of \"section.key=value\" strings");
  for (size_t i = 0; i < arr->size(); ++i) {
    const auto v = (*arr)[i].value_exact<std::string>();
    if (!v) s.fail_key(key, "element " + std::to_string(i) + " is not a string");
    out.push_back(*v);
  }
  return out;
}

// An axis value as the text of a --set value (TOML), and as a piece of a variant's name.
std::string toml_text(const toml::node& v) {
  if (auto s = v.value_exact<std::string>()) return toml_string(*s);
  if (auto i = v.value_exact<int64_t>()) return std::to_string(*i);
  if (auto d = v.value_exact<double>()) return toml_float(*d);
  if (auto b = v.value_exact<bool>()) return *b ? "true" : "false";
  return "";
}
std::string name_piece(const toml::node& v) {
  std::string s = v.is_string() ? *v.value_exact<std::string>() : toml_text(v);
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') c = '-';
  return s;
}

struct Draft {  // a variant before its config is resolved
  std::string name;
  std::vector<std::string> sets;
};

std::vector<Draft> listed_variants(const toml::table& root, const std::string& file) {
  std::vector<Draft> out;
  const toml::node* node = root.get("variant");
  if (!node) return out;
  const toml::array* arr = node->as_array();
  if (!arr || !arr->is_array_of_tables())
    fail(file, "'variant' must be an array of tables: [[variant]] with name and set");
  for (size_t i = 0; i < arr->size(); ++i) {
    TomlSection s((*arr)[i].as_table(), file, "variant " + std::to_string(i + 1));
    Draft d{s.get_string("name", ""), strings_of(s, "set")};
    s.finish();
    if (d.name.empty()) s.fail_key("name", "every variant needs a name");
    out.push_back(std::move(d));
  }
  return out;
}

// The product of the axes, the first axis outermost, crossed with the listed variants.
std::vector<Draft> cross_axes(std::vector<Draft> drafts, const toml::table& root,
                              const std::string& file) {
  const toml::node* node = root.get("axes");
  if (!node) return drafts;
  const toml::table* axes = node->as_table();
  if (!axes) fail(file, "'axes' must be a table: [axes] with \"section.key\" = [values]");
  for (const auto& [key, values] : *axes) {
    const toml::array* arr = values.as_array();
    if (!arr || arr->empty())
      fail(file, "[axes] ", key.str(), ": expected a non-empty array of values");
    std::vector<Draft> next;
    for (const Draft& d : drafts) {
      for (const toml::node& v : *arr) {
        const std::string text = toml_text(v);
        if (text.empty())
          fail(file, "[axes] ", key.str(), ": values are strings, numbers or booleans");
        Draft e = d;
        if (!e.name.empty()) e.name += '_';
        e.name += name_piece(v);
        e.sets.push_back(std::string(key.str()) + "=" + text);
        next.push_back(std::move(e));
      }
    }
    drafts = std::move(next);
  }
  return drafts;
}

}  // namespace

Sweep load_sweep(const std::string& path) {
  const toml::table root = parse_toml_file(path);
  TomlSection top(&root, path, "sweep");
  Sweep sw;
  sw.file = path;
  const std::string base = top.get_string("base", "");
  sw.name = top.get_string("name", fs::path(path).stem().string());
  const std::string dir = top.get_string("dir", "");
  sw.sets = strings_of(top, "set");
  top.get_node("variant");
  top.get_node("axes");
  top.finish();
  if (base.empty()) top.fail_key("base", "required: the base config, relative to the sweep file");
  if (sw.name.empty() || sw.name.find('/') != std::string::npos)
    top.fail_key("name", "'" + sw.name + "' is not a directory name");
  sw.base = (fs::path(path).parent_path() / base).lexically_normal().string();

  std::vector<Draft> listed = listed_variants(root, path);
  if (listed.empty()) listed.push_back({});  // the axes alone
  const std::vector<Draft> drafts = cross_axes(std::move(listed), root, path);
  if (drafts.front().name.empty())
    fail(path, "no variants: give [[variant]] tables or an [axes] table");
  const std::string parent =
      dir.empty() ? load_run_config(sw.base, sw.sets).run.dir : dir;  // default: the base's
  sw.dir = (fs::path(parent) / sw.name).string();
  std::map<std::string, int> seen;
  for (const Draft& d : drafts) {
    if (seen[d.name]++) fail(path, "two variants are named '", d.name, "'");
    std::vector<std::string> sets = sw.sets;
    sets.insert(sets.end(), d.sets.begin(), d.sets.end());
    sets.push_back("run.dir=" + toml_string(sw.dir));
    sets.push_back("run.name=" + toml_string(d.name));
    try {
      sw.variants.push_back({d.name, d.sets, load_run_config(sw.base, sets)});
    } catch (const Error& e) {
      throw Error(path, "variant '" + d.name + "': " + e.what(), e.hint());
    }
  }
  return sw;
}

VariantState variant_state(const SweepVariant& v) {
  const std::string latest = latest_checkpoint(v.cfg.run_dir());
  if (latest.empty()) return VariantState::fresh;
  const Checkpoint ck(latest);
  if (ck.config_toml() != v.cfg.to_toml())
    fail(latest, "was written with another config than the sweep's variant '", v.name,
         "' now gives (the sweep file or its base changed): move the run away to start it again");
  return ck.step() >= v.cfg.train.steps ? VariantState::done : VariantState::partial;
}

const char* variant_state_name(VariantState s) {
  return s == VariantState::done ? "done" : s == VariantState::partial ? "partial" : "new";
}

namespace {

std::string shell_quote(const std::string& s) {
  if (s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=") ==
      std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string joined(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const std::string& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// One command line per variant, for clusters that submit each variant as its own job.
void print_commands(const Sweep& sw, const std::string& launcher) {
  for (const SweepVariant& v : sw.variants) {
    std::string cmd =
        (launcher.empty() ? "" : launcher + " ") + "muongpt train --config " + shell_quote(sw.base);
    std::vector<std::string> sets = sw.sets;
    sets.insert(sets.end(), v.sets.begin(), v.sets.end());
    sets.push_back("run.dir=" + v.cfg.run.dir);
    sets.push_back("run.name=" + v.name);
    for (const std::string& s : sets) cmd += " --set " + shell_quote(s);
    if (variant_state(v) == VariantState::partial) cmd += " --resume latest";
    std::printf("%s\n", cmd.c_str());
  }
}

void print_plan(const Sweep& sw) {
  std::printf("sweep %s: %zu variants of %s in %s/\n", sw.name.c_str(), sw.variants.size(),
              sw.base.c_str(), sw.dir.c_str());
  if (!sw.sets.empty()) std::printf("  every variant: %s\n", joined(sw.sets, ", ").c_str());
  for (const SweepVariant& v : sw.variants)
    std::printf("  %-24s %-8s %s\n", v.name.c_str(), variant_state_name(variant_state(v)),
                v.sets.empty() ? "(the base)" : joined(v.sets, ", ").c_str());
}

// <sweep dir>/sweep.json: the variants, what each changes, and how each ended.
void write_record(const Sweep& sw, const nlohmann::json& results) {
  nlohmann::json j = {{"sweep", sw.name},
                      {"file", fs::absolute(sw.file).string()},
                      {"base", fs::absolute(sw.base).string()},
                      {"set", sw.sets},
                      {"variants", results}};
  fs::create_directories(sw.dir);
  const fs::path path = fs::path(sw.dir) / "sweep.json", tmp = path.string() + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(2) << "\n";
    if (!out) fail(tmp.string(), "cannot write (disk full?)");
  }
  fs::rename(tmp, path);
}

struct SweepOptions {
  std::string file, launcher;
  bool dry_run = false, print_commands = false;
  RankFlags ranks;
};

std::optional<SweepOptions> parse_options(int argc, char** argv) {
  cxxopts::Options opts("muongpt sweep",
                        "Run the variants of a base config, each as a run directory "
                        "<dir>/<sweep>/<variant>/ (docs/sweeps.md). Re-running skips finished "
                        "variants and resumes interrupted ones.");
  opts.add_options()("dry-run", "list the variants, what each changes and where each stands")(
      "print-commands", "print one `muongpt train` command per variant instead of running")(
      "launcher", "with --print-commands: put this in front of each (e.g. 'mpirun -np 8')",
      cxxopts::value<std::string>())("file", "the sweep file (TOML)",
                                     cxxopts::value<std::string>())("h,help", "show this help");
  add_rank_options(opts);
  opts.parse_positional({"file"});
  opts.positional_help("FILE");
  auto args = parse_command_line(opts, argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return std::nullopt;
  }
  if (!args.count("file")) fail("sweep", "a sweep file is required (see --help)");
  SweepOptions o;
  o.file = args["file"].as<std::string>();
  o.dry_run = args.count("dry-run") > 0;
  o.print_commands = args.count("print-commands") > 0;
  if (args.count("launcher")) o.launcher = args["launcher"].as<std::string>();
  if (!o.launcher.empty() && !o.print_commands)
    fail("sweep", "--launcher goes with --print-commands");
  o.ranks = rank_flags(args);
  return o;
}

// Runs the variants in order in one job (under a launcher every rank runs the same sequence).
// Returns the exit status: 0, 1 when a variant failed, 130 when a signal stopped one.
int run_sweep(const Sweep& sw, const SweepOptions& o) {
  const RankInfo info = discover_ranks(o.ranks);
  const RunConfig& first = sw.variants.front().cfg;
  const std::unique_ptr<Comm> comm =
      make_job_comm(info, first, resolve_backend(first.device.backend));
  const bool lead = comm->rank() == 0;
  nlohmann::json results = nlohmann::json::array();
  int status = 0;
  for (size_t i = 0; i < sw.variants.size(); ++i) {
    const SweepVariant& v = sw.variants[i];
    nlohmann::json r = {{"name", v.name}, {"set", v.sets}, {"dir", v.cfg.run_dir()}};
    try {
      const VariantState state = variant_state(v);
      if (lead)
        std::printf("\nsweep %s: variant %zu/%zu '%s' (%s): %s\n", sw.name.c_str(), i + 1,
                    sw.variants.size(), v.name.c_str(),
                    v.sets.empty() ? "the base" : joined(v.sets, ", ").c_str(),
                    state == VariantState::done      ? "finished, skipped"
                    : state == VariantState::partial ? "resuming"
                                                     : "starting");
      std::fflush(stdout);
      if (state != VariantState::done) {
        const TrainSummary s =
            train(v.cfg, {state == VariantState::partial ? "latest" : "", o.ranks}, comm.get());
        if (s.interrupted) {
          r["status"] = "interrupted";
          results.push_back(r);
          if (lead) write_record(sw, results);
          return 130;  // the signal stops the sweep, not only the variant
        }
      }
      r["status"] = "done";
    } catch (const Error& e) {
      if (comm->world() > 1) throw;  // the other ranks may sit in a collective: end the job
      std::fprintf(stderr, "muongpt: error: %s\n", e.what());
      r["status"] = "failed";
      r["error"] = e.what();
      status = 1;
    }
    results.push_back(r);
    if (lead) write_record(sw, results);
  }
  if (lead) {
    std::printf("\nsweep %s:\n", sw.name.c_str());
    for (const auto& r : results)
      std::printf("  %-24s %s%s\n", r["name"].get<std::string>().c_str(),
                  r["status"].get<std::string>().c_str(),
                  r.contains("error") ? (": " + r["error"].get<std::string>()).c_str() : "");
    std::printf("compare them: muongpt compare %s\n", sw.dir.c_str());
  }
  return status;
}

}  // namespace

int cmd_sweep(int argc, char** argv) {
  const std::optional<SweepOptions> o = parse_options(argc, argv);
  if (!o) return 0;
  const Sweep sw = load_sweep(o->file);
  if (o->dry_run) {
    print_plan(sw);
    return 0;
  }
  if (o->print_commands) {
    print_commands(sw, o->launcher);
    return 0;
  }
  return run_sweep(sw, *o);
}

}  // namespace muongpt
