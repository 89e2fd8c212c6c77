// Reading what a run directory holds, for the tools that look at finished or running runs
// (compare, ranks).
#pragma once

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace muongpt {

// The records of a metrics.jsonl or ranks.jsonl: one JSON object per line, each with an integer
// "step" and whatever `valid` asks of it. A partial last line (the writer is mid-line, or was
// killed there) is skipped; any other bad line is an error naming the file and the line ("is not
// <what>"). nullopt when the file is missing.
std::optional<std::vector<nlohmann::json>> read_run_records(
    const std::filesystem::path& path, const char* what,
    bool (*valid)(const nlohmann::json&) = nullptr);

// routing.tsv: parameter name -> "optimizer" or "optimizer/dualizer". Empty when the run has none.
std::map<std::string, std::string> read_routing(const std::filesystem::path& path);

}  // namespace muongpt
