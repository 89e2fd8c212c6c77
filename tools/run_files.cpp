#include "tools/run_files.h"

#include <fstream>
#include <sstream>

#include "core/error.h"

namespace muongpt {

std::optional<std::vector<nlohmann::json>> read_run_records(const std::filesystem::path& path,
                                                            const char* what,
                                                            bool (*valid)(const nlohmann::json&)) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::vector<nlohmann::json> out;
  int line_no = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (line.empty()) continue;
    nlohmann::json rec = nlohmann::json::parse(line, nullptr, false);
    if (!rec.is_object() || !rec.contains("step") || !rec["step"].is_number_integer() ||
        (valid && !valid(rec))) {
      if (in.eof()) break;  // no newline yet: not finished by the writer
      fail(path.string(), "line ", line_no, " is not ", what);
    }
    out.push_back(std::move(rec));
  }
  return out;
}

std::map<std::string, std::string> read_routing(const std::filesystem::path& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header: name shape optimizer dualizer ...
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, '\t');) cells.push_back(c);
    if (cells.size() < 4) continue;
    out[cells[0]] = cells[3] == "-" || cells[3].empty() ? cells[2] : cells[2] + "/" + cells[3];
  }
  return out;
}

}  // namespace muongpt
