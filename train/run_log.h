// What a run prints: lines on the console mirrored into <run>/log.txt, and JSON records appended
// to metrics.jsonl / ranks.jsonl (each line flushed as it is written, so a killed run loses at
// most the line being written).
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace muongpt {

class JsonlWriter {
 public:
  // Opens for appending; with keep_through >= 0, first drops records whose "step" is larger
  // (a resumed run rewrites what came after its checkpoint).
  JsonlWriter(const std::string& path, int64_t keep_through);
  ~JsonlWriter();
  JsonlWriter(const JsonlWriter&) = delete;
  JsonlWriter& operator=(const JsonlWriter&) = delete;
  void write(const nlohmann::json& record);

 private:
  std::string path_;
  std::FILE* f_ = nullptr;
};

class Console {
 public:
  explicit Console(const std::string& log_path);
  Console();  // prints and logs nothing (the ranks other than 0)
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;
  void line(const std::string& text);      // a permanent line (console and log.txt)
  void progress(const std::string& text);  // an overwritten status line, only on a terminal

 private:
  std::FILE* log_ = nullptr;
  bool tty_ = false;
  bool progress_shown_ = false;
  bool silent_ = false;
};

std::string format_duration(double seconds);  // "1h02m", "3m05s", "42s"

}  // namespace muongpt
