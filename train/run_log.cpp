#include "train/run_log.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "core/error.h"

namespace muongpt {

JsonlWriter::JsonlWriter(const std::string& path, int64_t keep_through) : path_(path) {
  if (keep_through >= 0) {
    std::vector<std::string> kept;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      auto rec = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (rec.is_object() && rec.contains("step") && rec["step"].is_number_integer() &&
          rec["step"].get<int64_t>() <= keep_through)
        kept.push_back(line);
    }
    std::ofstream out(path, std::ios::trunc);
    for (const auto& l : kept) out << l << "\n";
    if (!out) fail(path, "cannot rewrite");
  }
  f_ = std::fopen(path.c_str(), "a");
  if (!f_) fail(path, "cannot open for appending");
}

JsonlWriter::~JsonlWriter() {
  if (f_) std::fclose(f_);
}

void JsonlWriter::write(const nlohmann::json& record) {
  const std::string s = record.dump() + "\n";
  if (std::fwrite(s.data(), 1, s.size(), f_) != s.size() || std::fflush(f_) != 0)
    fail(path_, "write failed (disk full?)");
}

Console::Console() : silent_(true) {}

Console::Console(const std::string& log_path) : tty_(::isatty(STDOUT_FILENO) != 0) {
  log_ = std::fopen(log_path.c_str(), "a");
  if (!log_) fail(log_path, "cannot open for appending");
}

Console::~Console() {
  if (progress_shown_) std::fputs("\n", stdout);
  if (log_) std::fclose(log_);
}

void Console::line(const std::string& text) {
  if (silent_) return;
  if (progress_shown_) std::fputs("\r\033[K", stdout);
  progress_shown_ = false;
  std::fputs((text + "\n").c_str(), stdout);
  std::fflush(stdout);
  std::fputs((text + "\n").c_str(), log_);
  std::fflush(log_);
}

void Console::progress(const std::string& text) {
  if (silent_ || !tty_) return;
  std::fputs(("\r\033[K" + text).c_str(), stdout);
  std::fflush(stdout);
  progress_shown_ = true;
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", (long long)(s / 3600), (long long)(s / 60 % 60));
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", (long long)(s / 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%llds", (long long)s);
  return buf;
}

}  // namespace muongpt
