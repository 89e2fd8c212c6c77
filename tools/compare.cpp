// `muongpt compare DIR... [--csv | --json] [--all-blocks]`: runs side by side (run directories,
// or sweep directories holding runs): what each changes against the first (the resolved-config
// diff), final and best val loss, val loss at matched tokens, its Δ against the first and its
// share of the best-worst gap, tokens, wall time and tokens/s; then the rank telemetry of the
// blocks that differ in routing or architecture, at the last telemetry step all runs have; and
// flags for runs that are not comparable (other data, tokens or model). docs/sweeps.md.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tools/commands.h"
#include "tools/format.h"
#include "tools/run_files.h"
#include "train/config.h"

namespace muongpt {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

double number(const json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}

struct Run {
  std::string dir, label;
  RunConfig cfg;
  std::vector<std::pair<std::string, std::string>> values;  // config_values(cfg)
  std::vector<json> metrics, ranks;
  std::map<std::string, std::string> routing;
  json decision;                               // routing.json (routing = "criterion"), or null
  std::vector<std::pair<double, double>> val;  // (tokens, val_loss)
  // The comparison's figures.
  std::vector<std::string> changes, flags;
  double final_val = NAN, best_val = NAN, best_tokens = NAN, matched = NAN;
  double tokens = 0, elapsed_s = NAN, tokens_per_s = NAN;
};

bool is_run(const fs::path& dir) {
  return fs::is_regular_file(dir / "metrics.jsonl") && fs::is_regular_file(dir / "config.toml");
}

Run read_run(const fs::path& dir, const std::string& label) {
  Run r;
  r.dir = dir.string();
  r.label = label;
  r.cfg = load_run_config((dir / "config.toml").string());
  r.values = config_values(r.cfg);
  auto metrics = read_run_records(dir / "metrics.jsonl", "a record of a run");
  if (!metrics) fail((dir / "metrics.jsonl").string(), "missing");
  r.metrics = std::move(*metrics);
  r.ranks =
      read_run_records(dir / "ranks.jsonl", "a record of a run").value_or(std::vector<json>{});
  r.routing = read_routing(dir / "routing.tsv");
  if (fs::is_regular_file(dir / "routing.json"))
    r.decision = json::parse(std::ifstream(dir / "routing.json"), nullptr, false);
  if (r.decision.is_discarded() || (!r.decision.is_null() && !r.decision.contains("moved")))
    fail((dir / "routing.json").string(), "not a criterion routing decision");
  for (const json& m : r.metrics) {
    r.tokens = std::max(r.tokens, number(m, "tokens"));
    if (std::isfinite(number(m, "elapsed_s"))) r.elapsed_s = number(m, "elapsed_s");
    if (std::isfinite(number(m, "val_loss"))) {
      r.val.emplace_back(number(m, "tokens"), number(m, "val_loss"));
      if (!(r.val.back().second >= r.best_val))
        r.best_val = r.val.back().second, r.best_tokens = r.val.back().first;
    }
  }
  if (!r.val.empty()) r.final_val = r.val.back().second;
  if (std::isfinite(r.elapsed_s) && r.elapsed_s > 0) r.tokens_per_s = r.tokens / r.elapsed_s;
  return r;
}

// The runs the arguments name: a run directory, or a sweep directory's runs (in the order of its
// sweep.json when it has one, else by name).
std::vector<Run> read_runs(const std::vector<std::string>& dirs) {
  std::vector<Run> runs;
  for (const std::string& d : dirs) {
    const fs::path p(d);
    if (!fs::is_directory(p)) fail(d, "not a directory");
    if (is_run(p)) {
      runs.push_back(read_run(p, p.filename().string()));
      continue;
    }
    std::vector<std::string> names;
    if (fs::is_regular_file(p / "sweep.json")) {
      const json sweep = json::parse(std::ifstream(p / "sweep.json"), nullptr, false);
      if (sweep.is_object() && sweep.contains("variants") && sweep["variants"].is_array())
        for (const json& v : sweep["variants"])
          if (v.contains("name") && v["name"].is_string()) names.push_back(v["name"]);
    }
    if (names.empty()) {
      for (const auto& e : fs::directory_iterator(p))
        if (is_run(e.path())) names.push_back(e.path().filename().string());
      std::sort(names.begin(), names.end());
    }
    size_t found = 0;
    for (const std::string& n : names)
      if (is_run(p / n)) {
        runs.push_back(read_run(p / n, p.filename().string() + "/" + n));
        ++found;
      }
    if (found == 0)
      fail(d, "not a run directory (no metrics.jsonl and config.toml) nor a sweep of runs");
  }
  if (runs.empty()) fail("compare", "no runs given (see --help)");
  return runs;
}

// Val loss at `tokens`, linearly between the evaluations around it; NaN outside them.
double val_at(const Run& r, double tokens) {
  for (size_t i = 0; i < r.val.size(); ++i) {
    if (r.val[i].first == tokens) return r.val[i].second;
    if (i > 0 && r.val[i - 1].first < tokens && tokens < r.val[i].first) {
      const auto [t0, v0] = r.val[i - 1];
      const auto [t1, v1] = r.val[i];
      return v0 + (v1 - v0) * (tokens - t0) / (t1 - t0);
    }
  }
  return NAN;
}

// The figures that need all the runs: the config diff against the first, val loss at the last
// token count every run has evaluated at or past, and the comparability flags.
double compare_runs(std::vector<Run>& runs) {
  const Run& ref = runs.front();
  double matched = INFINITY;
  for (const Run& r : runs) matched = std::min(matched, r.val.empty() ? NAN : r.val.back().first);
  for (Run& r : runs) {
    r.matched = val_at(r, matched);
    bool data = false, model = false;
    for (size_t i = 0; i < r.values.size(); ++i) {
      const auto& [key, value] = r.values[i];
      if (key == "run.name" || key == "run.dir" || value == ref.values[i].second) continue;
      r.changes.push_back(key + "=" + value);
      data |= key.starts_with("data.train") || key.starts_with("data.val") || key == "data.seq_len";
      model |= key.starts_with("model.");
    }
    if (data) r.flags.push_back("other data");
    if (r.tokens != ref.tokens) r.flags.push_back("other tokens");
    if (model) r.flags.push_back("other model");
  }
  return matched;
}

struct Telemetry {
  int64_t step = -1;
  std::vector<std::string> weights;  // the blocks shown
  bool all = false;                  // no block differs: every one is shown
};

// The last telemetry step every run has, and the weights that differ in routing or exist only
// in some runs (every weight with `all_blocks`, or when none differs).
Telemetry pick_telemetry(const std::vector<Run>& runs, bool all_blocks) {
  Telemetry t;
  std::set<int64_t> common;
  for (const json& rec : runs.front().ranks) common.insert(rec["step"].get<int64_t>());
  for (const Run& r : runs) {
    std::set<int64_t> here;
    for (const json& rec : r.ranks)
      if (common.count(rec["step"].get<int64_t>())) here.insert(rec["step"].get<int64_t>());
    common = here;
  }
  if (common.empty()) return t;
  t.step = *common.rbegin();
  std::set<std::string> names;
  for (const Run& r : runs)
    for (const auto& [name, opt] : r.routing) names.insert(name);
  for (const std::string& n : names) {
    std::set<std::string> seen;
    for (const Run& r : runs) seen.insert(r.routing.count(n) ? r.routing.at(n) : "(absent)");
    if (seen.size() > 1 || all_blocks) t.weights.push_back(n);
  }
  if (t.weights.empty()) {
    t.weights.assign(names.begin(), names.end());
    t.all = true;
  }
  return t;
}

const json* record_at(const Run& r, int64_t step) {
  for (const json& rec : r.ranks)
    if (rec["step"].get<int64_t>() == step) return &rec;
  return nullptr;
}

// One weight of one run at the step: routing, st(A) of its input, nr(G), nr/st, update st.
json weight_row(const Run& r, const std::string& weight, int64_t step) {
  json row = {{"run", r.label}, {"weight", weight}};
  row["optimizer"] = r.routing.count(weight) ? r.routing.at(weight) : "(absent)";
  const json* rec = record_at(r, step);
  if (!rec || !(*rec)["weights"].contains(weight)) return row;
  const json& w = (*rec)["weights"][weight];
  const std::string input = w.value("input", "");
  row["input"] = input;
  const json& act = (*rec)["act"];
  if (act.contains(input) && act[input].contains("st")) row["st_input"] = act[input]["st"];
  for (const char* k : {"grad_nr", "ratio", "update_st"})
    if (w.contains(k)) row[k] = w[k];
  return row;
}

std::string fmt(double v, const char* f = "%.4f") {
  return number_or_dash(v, f);
}

std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : sep) + x;
  return s;
}

json runs_json(const std::vector<Run>& runs) {
  const Run& ref = runs.front();
  double best = INFINITY, worst = -INFINITY;
  for (const Run& r : runs)
    if (std::isfinite(r.matched))
      best = std::min(best, r.matched), worst = std::max(worst, r.matched);
  json out = json::array();
  for (const Run& r : runs) {
    auto num = [](double v) { return std::isfinite(v) ? json(v) : json(); };
    out.push_back({{"run", r.label},
                   {"dir", r.dir},
                   {"changes", r.changes},
                   {"final_val_loss", num(r.final_val)},
                   {"best_val_loss", num(r.best_val)},
                   {"best_val_tokens", num(r.best_tokens)},
                   {"matched_val_loss", num(r.matched)},
                   {"delta", num(r.matched - ref.matched)},
                   {"share_of_gap", num(worst > best ? (worst - r.matched) / (worst - best) : NAN)},
                   {"tokens", r.tokens},
                   {"elapsed_s", num(r.elapsed_s)},
                   {"tokens_per_s", num(r.tokens_per_s)},
                   {"flags", r.flags},
                   {"routing_decision", r.decision}});
  }
  return out;
}

void print_table(const json& runs, double matched, const json& telemetry) {
  std::printf("%-28s %9s %9s %12s %11s %8s %6s %10s %8s %8s  %s\n", "run", "final val", "best val",
              "at tokens", ("val@" + fmt(matched, "%.0f")).c_str(), "delta", "share", "tokens",
              "wall s", "tok/s", "changes vs the first");
  for (const json& r : runs) {
    auto d = [&](const char* k) { return r[k].is_number() ? r[k].get<double>() : NAN; };
    std::string changes = r["changes"].empty() ? "(the reference)" : join(r["changes"], ", ");
    if (!r["routing_decision"].is_null())
      changes += "  [criterion at step " + r["routing_decision"]["step"].dump() + ": " +
                 std::to_string(r["routing_decision"]["moved"].size()) + " of " +
                 std::to_string(r["routing_decision"]["ratios"].size()) + " moved to Muon]";
    if (!r["flags"].empty()) changes += "  [not comparable: " + join(r["flags"], ", ") + "]";
    std::printf("%-28s %9s %9s %12s %11s %8s %6s %10s %8s %8s  %s\n",
                r["run"].get<std::string>().c_str(), fmt(d("final_val_loss")).c_str(),
                fmt(d("best_val_loss")).c_str(), fmt(d("best_val_tokens"), "%.0f").c_str(),
                fmt(d("matched_val_loss")).c_str(), fmt(d("delta"), "%+.4f").c_str(),
                fmt(100 * d("share_of_gap"), "%.0f%%").c_str(), fmt(d("tokens"), "%.0f").c_str(),
                fmt(d("elapsed_s"), "%.0f").c_str(), fmt(d("tokens_per_s"), "%.0f").c_str(),
                changes.c_str());
  }
  std::printf("share: (worst - val) / (worst - best) of the val loss at matched tokens\n");
  if (telemetry.is_null()) {
    std::printf("\nno telemetry step that every run has\n");
    return;
  }
  std::printf("\ntelemetry at step %lld, %s:\n", telemetry["step"].get<long long>(),
              telemetry["all_blocks"].get<bool>()
                  ? "every weight (no block differs in routing or architecture)"
                  : "the weights that differ in routing or architecture");
  std::printf("  %-22s %-28s %-18s %8s %8s %7s %8s\n", "weight", "run", "optimizer", "st(A)",
              "nr(G)", "nr/st", "upd st");
  for (const json& w : telemetry["weights"]) {
    auto d = [&](const char* k) {
      return w.contains(k) && w[k].is_number() ? w[k].get<double>() : NAN;
    };
    std::printf("  %-22s %-28s %-18s %8s %8s %7s %8s\n", w["weight"].get<std::string>().c_str(),
                w["run"].get<std::string>().c_str(), w["optimizer"].get<std::string>().c_str(),
                fmt(d("st_input"), "%.2f").c_str(), fmt(d("grad_nr"), "%.2f").c_str(),
                fmt(d("ratio"), "%.2f").c_str(), fmt(d("update_st"), "%.2f").c_str());
  }
}

std::string csv_cell(const json& v) {
  if (v.is_null()) return "";
  if (v.is_array()) return "\"" + join(v.get<std::vector<std::string>>(), "; ") + "\"";
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.find_first_of(",\"") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }
  return v.dump();
}

// Two CSV tables, the runs and the telemetry rows, separated by a blank line.
void print_csv(const json& runs, const json& telemetry) {
  const std::vector<const char*> cols = {
      "run",     "final_val_loss", "best_val_loss", "best_val_tokens", "matched_val_loss",
      "delta",   "share_of_gap",   "tokens",        "elapsed_s",       "tokens_per_s",
      "changes", "flags"};
  std::string line;
  for (const char* c : cols) line += (line.empty() ? "" : ",") + std::string(c);
  std::printf("%s\n", line.c_str());
  for (const json& r : runs) {
    line.clear();
    for (size_t i = 0; i < cols.size(); ++i) {
      if (i) line += ',';
      line += csv_cell(r[cols[i]]);
    }
    std::printf("%s\n", line.c_str());
  }
  if (telemetry.is_null()) return;
  std::printf("\nstep,weight,run,optimizer,input,st_input,grad_nr,ratio,update_st\n");
  for (const json& w : telemetry["weights"]) {
    line = std::to_string(telemetry["step"].get<long long>());
    for (const char* k :
         {"weight", "run", "optimizer", "input", "st_input", "grad_nr", "ratio", "update_st"})
      line.append(",").append(csv_cell(w.contains(k) ? w[k] : json()));
    std::printf("%s\n", line.c_str());
  }
}

}  // namespace

int cmd_compare(int argc, char** argv) {
  cxxopts::Options opts("muongpt compare",
                        "Line runs up: what each changes against the first, final, best and "
                        "matched-token val loss, the share of the best-worst gap, tokens, wall "
                        "time and tokens/s, and the telemetry of the blocks that differ. DIRs are "
                        "run directories or sweep directories (docs/sweeps.md).");
  opts.add_options()("csv", "two CSV tables (runs, then telemetry rows) instead of text")(
      "json", "one JSON object instead of text")("all-blocks", "telemetry of every weight")(
      "dirs", "run or sweep directories", cxxopts::value<std::vector<std::string>>())(
      "h,help", "show this help");
  opts.parse_positional({"dirs"});
  opts.positional_help("DIR...");
  auto args = parse_command_line(opts, argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return 0;
  }
  if (!args.count("dirs")) fail("compare", "give run or sweep directories (see --help)");
  if (args.count("csv") && args.count("json")) fail("compare", "--csv or --json, not both");
  std::vector<Run> runs = read_runs(args["dirs"].as<std::vector<std::string>>());
  const double matched = compare_runs(runs);
  const json table = runs_json(runs);
  const Telemetry t = pick_telemetry(runs, args.count("all-blocks") > 0);
  json telemetry;  // null without a common step
  if (t.step >= 0) {
    telemetry = {{"step", t.step}, {"all_blocks", t.all}, {"weights", json::array()}};
    for (const std::string& w : t.weights)
      for (const Run& r : runs) telemetry["weights"].push_back(weight_row(r, w, t.step));
  }
  if (args.count("json")) {
    json j = {{"matched_tokens", std::isfinite(matched) ? json(matched) : json()},
              {"runs", table},
              {"telemetry", telemetry}};
    std::printf("%s\n", j.dump(2).c_str());
  } else if (args.count("csv")) {
    print_csv(table, telemetry);
  } else {
    print_table(table, matched, telemetry);
  }
  return 0;
}

}  // namespace muongpt
