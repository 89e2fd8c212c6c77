// `muongpt ranks RUN_DIR [--step N] [--csv]`: the latest (or step N's) rank telemetry of a run,
// per block, with the trend since the first record, marking the weights where nr(G) ≥ st(A) (the
// seed paper's criterion for a spectral update to beat a Euclidean one); or every record (or
// step N's) as one flat CSV table for scripts.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cxxopts.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "core/error.h"
#include "tools/commands.h"
#include "tools/format.h"
#include "tools/run_files.h"

namespace muongpt {

namespace {

using json = nlohmann::json;

// A run's ranks.jsonl: at least one record, each with its activations and weights.
std::vector<json> read_telemetry(const std::filesystem::path& path) {
  auto records = read_run_records(path, "a telemetry record", [](const json& r) {
    return r.contains("act") && r["act"].is_object() && r.contains("weights") &&
           r["weights"].is_object();
  });
  if (!records) fail(path.string(), "missing (was the run trained with [telemetry] every > 0?)");
  if (records->empty()) fail(path.string(), "holds no telemetry record yet");
  return std::move(*records);
}

double get(const json& j, std::initializer_list<const char*> path) {
  const json* p = &j;
  for (const char* k : path) {
    if (!p->is_object() || !p->contains(k)) return NAN;
    p = &(*p)[k];
  }
  return p->is_number() ? p->get<double>() : NAN;
}

// The string at `key`, or "" when it is missing or not a string.
std::string text(const json& obj, const char* key) {
  return obj.is_object() && obj.contains(key) && obj[key].is_string() ? obj[key].get<std::string>()
                                                                      : "";
}

// The earliest defined value along `path` (zero-initialised weights have no gradient rank at
// step 1, so the trend starts where the value first exists).
double first_value(const std::vector<json>& records, std::initializer_list<const char*> path) {
  for (const json& r : records)
    if (double v = get(r, path); std::isfinite(v)) return v;
  return NAN;
}

std::string cell(double v, const char* f = "%.2f") {
  return number_or_dash(v, f);
}

// "blocks.2..." before "blocks.10...", and blocks before the head.
bool natural_less(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit((unsigned char)a[i]) && std::isdigit((unsigned char)b[j])) {
      size_t ei = i, ej = j;
      while (ei < a.size() && std::isdigit((unsigned char)a[ei])) ++ei;
      while (ej < b.size() && std::isdigit((unsigned char)b[ej])) ++ej;
      long long x = std::stoll(a.substr(i, ei - i)), y = std::stoll(b.substr(j, ej - j));
      if (x != y) return x < y;
      i = ei, j = ej;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

std::vector<std::string> sorted_keys(const json& obj) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : obj.items()) keys.push_back(k);
  std::sort(keys.begin(), keys.end(), natural_less);
  return keys;
}

std::string trend(double first, double last) {
  if (!std::isfinite(first) || !std::isfinite(last)) return "-";
  return cell(first) + " -> " + cell(last);
}

// A CSV cell: the number in full precision, empty when undefined.
std::string csv_number(double v) {
  if (!std::isfinite(v)) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// One row per activation ("act": st, and p_max for the tokens) and per weight ("weight": the
// rest), for every record in `records`.
void print_csv(const std::vector<const json*>& records) {
  std::printf(
      "step,tokens,kind,name,st,p_max,input,grad_nr,grad_st,ratio,update_st,update_rel,"
      "alt_input,alt_ratio\n");
  for (const json* r : records) {
    const std::string head = csv_number(get(*r, {"step"})) + "," + csv_number(get(*r, {"tokens"}));
    for (const std::string& key : sorted_keys((*r)["act"])) {
      const json& a = (*r)["act"][key];
      std::printf("%s,act,%s,%s,%s,,,,,,,,\n", head.c_str(), key.c_str(),
                  csv_number(get(a, {"st"})).c_str(), csv_number(get(a, {"p_max"})).c_str());
    }
    for (const std::string& key : sorted_keys((*r)["weights"])) {
      const json& w = (*r)["weights"][key];
      std::printf("%s,weight,%s,,,%s,%s,%s,%s,%s,%s,%s,%s\n", head.c_str(), key.c_str(),
                  text(w, "input").c_str(), csv_number(get(w, {"grad_nr"})).c_str(),
                  csv_number(get(w, {"grad_st"})).c_str(), csv_number(get(w, {"ratio"})).c_str(),
                  csv_number(get(w, {"update_st"})).c_str(),
                  csv_number(get(w, {"update_rel"})).c_str(), text(w, "alt_input").c_str(),
                  csv_number(get(w, {"alt_ratio"})).c_str());
    }
  }
}

// The command line. --step stays text until the records are read, so that a missing run is
// reported first.
struct RanksOptions {
  std::string run;
  std::optional<std::string> step;
  bool csv = false;
};

// The options, or nothing after printing --help.
std::optional<RanksOptions> parse_ranks_options(int argc, char** argv) {
  cxxopts::Options opts("muongpt ranks",
                        "Per-block rank telemetry of a run: activation stable ranks st(A), "
                        "gradient nuclear ranks nr(G), and their ratio (latest record, with the "
                        "trend since the first).");
  opts.add_options()("run", "run directory", cxxopts::value<std::string>())(
      "step", "the record of this step instead of the latest", cxxopts::value<std::string>())(
      "csv",
      "every record (or --step's) as one CSV table on stdout, one row per activation and "
      "per weight (docs/telemetry.md)")("h,help", "show this help");
  opts.parse_positional({"run"});
  opts.positional_help("RUN_DIR");
  auto args = parse_command_line(opts, argc, argv);
  if (args.count("help")) {
    std::cout << opts.help() << std::endl;
    return std::nullopt;
  }
  if (!args.count("run")) fail("ranks", "RUN_DIR is required (see --help)");
  RanksOptions o;
  o.run = args["run"].as<std::string>();
  if (args.count("step")) o.step = args["step"].as<std::string>();
  o.csv = args.count("csv") > 0;
  return o;
}

// The record of step `step_text`; an error listing the recorded steps when there is none.
const json& record_at_step(const std::vector<json>& records, const std::string& step_text,
                           const std::string& run) {
  long long want = -1;
  const auto [end, ec] =
      std::from_chars(step_text.data(), step_text.data() + step_text.size(), want);
  if (ec != std::errc() || end != step_text.data() + step_text.size() || want < 0)
    fail("--step", "expected a step number, got '", step_text, "'");
  auto it = std::find_if(records.begin(), records.end(),
                         [&](const json& r) { return r["step"].get<long long>() == want; });
  if (it == records.end()) {
    std::string steps;
    for (const json& r : records)
      steps += (steps.empty() ? "" : ", ") + std::to_string(r["step"].get<long long>());
    fail(run, "has no telemetry record at step ", want, " (records at steps ", steps, ")");
  }
  return *it;
}

// Each activation's st(A), from its first value to `last`'s.
void print_activation_trends(const std::vector<json>& records, const json& last,
                             const std::string& shown) {
  std::printf("activation stable rank st(A), first -> %s\n", shown.c_str());
  std::printf(
      "  %-22s %s\n", "tokens (1/p_max)",
      trend(first_value(records, {"act", "tokens", "st"}), get(last, {"act", "tokens", "st"}))
          .c_str());
  for (const std::string& key : sorted_keys(last["act"])) {
    if (key == "tokens") continue;
    std::printf("  %-22s %s\n", key.c_str(),
                trend(first_value(records, {"act", key.c_str(), "st"}),
                      get(last, {"act", key.c_str(), "st"}))
                    .c_str());
  }
}

// One row per weight of `last`, marked where nr(G) >= st(A), and the count of marked rows.
void print_weight_rows(const std::vector<json>& records, const json& last,
                       const std::map<std::string, std::string>& routing,
                       const std::string& shown) {
  std::printf("\n%-22s %-18s %-18s %8s %8s %7s %8s  %s\n", "weight", "optimizer", "input A",
              "st(A)", "nr(G)", "nr/st", "upd st", ("nr(G) first -> " + shown).c_str());
  int marked = 0, total = 0;
  for (const std::string& name : sorted_keys(last["weights"])) {
    const json& w = last["weights"][name];
    const std::string input = text(w, "input");
    const double st = get(last, {"act", input.c_str(), "st"});
    const double nr = get(w, {"grad_nr"});
    const bool spectral = std::isfinite(nr) && std::isfinite(st) && nr >= st;
    marked += spectral;
    ++total;
    auto it = routing.find(name);
    std::printf("%-22s %-18s %-18s %8s %8s %7s %8s  %s%s\n", name.c_str(),
                it == routing.end() ? "?" : it->second.c_str(), input.c_str(), cell(st).c_str(),
                cell(nr).c_str(), cell(get(w, {"ratio"})).c_str(),
                cell(get(w, {"update_st"})).c_str(),
                trend(first_value(records, {"weights", name.c_str(), "grad_nr"}), nr).c_str(),
                spectral ? "  *" : "");
  }
  std::printf(
      "\n* nr(G) >= st(A): a spectral (Muon) update is predicted to beat a Euclidean one "
      "(%d of %d weights)\n",
      marked, total);
}

// The table for the record `last`, with the trends since the first record.
void print_table(const std::string& run, const std::vector<json>& records, const json& last,
                 const std::map<std::string, std::string>& routing) {
  const bool latest = &last == &records.back();
  const std::string shown =
      latest ? "latest" : "step " + std::to_string(last["step"].get<long long>());
  std::printf("%s: %zu telemetry records, steps %lld..%lld; %s over %.0f tokens (%.2f s)\n\n",
              run.c_str(), records.size(), records.front()["step"].get<long long>(),
              records.back()["step"].get<long long>(), shown.c_str(), get(last, {"tokens"}),
              get(last, {"seconds"}));
  print_activation_trends(records, last, shown);
  print_weight_rows(records, last, routing, shown);
}

}  // namespace

int cmd_ranks(int argc, char** argv) {
  const std::optional<RanksOptions> o = parse_ranks_options(argc, argv);
  if (!o) return 0;  // --help
  if (!std::filesystem::is_directory(o->run)) fail(o->run, "not a run directory");
  const std::filesystem::path run(o->run);
  const auto records = read_telemetry(run / "ranks.jsonl");
  const auto routing = read_routing(run / "routing.tsv");
  const json& chosen = o->step ? record_at_step(records, *o->step, o->run) : records.back();
  if (o->csv) {
    std::vector<const json*> rows;
    for (const json& r : records)
      if (!o->step || &r == &chosen) rows.push_back(&r);
    print_csv(rows);
    return 0;
  }
  print_table(o->run, records, chosen, routing);
  return 0;
}

}  // namespace muongpt
