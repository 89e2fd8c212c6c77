// Number formatting for the tools' console output.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace muongpt {

// 1234567 -> "1,234,567"
inline std::string with_commas(int64_t v) {
  std::string digits = std::to_string(v < 0 ? -v : v), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return v < 0 ? "-" + out : out;
}

// 2048 -> "2.0 kB", 3.5e6 -> "3.50 MB" (decimal units, as MB/s figures are)
inline std::string human_bytes(double b) {
  char buf[32];
  if (b < 1e3)
    std::snprintf(buf, sizeof(buf), "%.0f B", b);
  else if (b < 1e6)
    std::snprintf(buf, sizeof(buf), "%.1f kB", b / 1e3);
  else if (b < 1e9)
    std::snprintf(buf, sizeof(buf), "%.2f MB", b / 1e6);
  else
    std::snprintf(buf, sizeof(buf), "%.2f GB", b / 1e9);
  return buf;
}

// 75.3 -> "1m15s"
inline std::string human_seconds(double s) {
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof(buf), "%.0fs", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof(buf), "%dm%02ds", int(s) / 60, int(s) % 60);
  else
    std::snprintf(buf, sizeof(buf), "%dh%02dm", int(s) / 3600, (int(s) / 60) % 60);
  return buf;
}

// A table cell: v printed with the printf format f ("%.4f"), or "-" when v is not finite (a
// value a run does not have).
inline std::string number_or_dash(double v, const char* f) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

}  // namespace muongpt
