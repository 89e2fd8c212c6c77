#include "core/memory.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "core/device.h"
#include "core/error.h"

namespace muongpt {

namespace {

// The first number in a file ("max" and a missing file give nullopt-like max()).
size_t read_number(const std::string& path) {
  std::ifstream in(path);
  size_t v = 0;
  if (in >> v) return v;
  return std::numeric_limits<size_t>::max();
}

size_t host_available() {
  size_t avail = std::numeric_limits<size_t>::max();
  std::ifstream in("/proc/meminfo");
  for (std::string key; in >> key;) {
    size_t kib = 0;
    std::string unit;
    in >> kib >> unit;
    if (key == "MemAvailable:") avail = kib * 1024;
  }
  const size_t limit = read_number("/sys/fs/cgroup/memory.max");  // cgroup v2
  const size_t used = read_number("/sys/fs/cgroup/memory.current");
  if (limit != std::numeric_limits<size_t>::max() && used != std::numeric_limits<size_t>::max())
    avail = std::min(avail, limit > used ? limit - used : 0);
  return avail;
}

// $MUONGPT_MEMORY_LIMIT, or max() when unset. A malformed value is an error, not ignored.
size_t env_limit() {
  const char* text = std::getenv("MUONGPT_MEMORY_LIMIT");
  if (!text || !*text) return std::numeric_limits<size_t>::max();
  std::istringstream in(text);
  double v = 0;
  std::string suffix;
  in >> v >> suffix;
  const double scale = suffix.empty()  ? 1.0
                       : suffix == "K" ? 1024.0
                       : suffix == "M" ? 1048576.0
                       : suffix == "G" ? 1073741824.0
                                       : -1.0;
  if (in.fail() && !in.eof()) v = -1;
  if (!(v >= 0) || scale < 0)
    fail("$MUONGPT_MEMORY_LIMIT", "expected bytes with an optional K, M or G suffix, got '", text,
         "'");
  return static_cast<size_t>(v * scale);
}

}  // namespace

size_t available_memory(Device device) {
  const size_t avail = device == Device::cuda ? cuda_free_memory() : host_available();
  return std::min(avail, env_limit());
}

std::string format_gib(size_t bytes) {
  char buf[48];
  if (bytes >= (size_t(1) << 30))
    std::snprintf(buf, sizeof buf, "%.1f GiB", double(bytes) / double(size_t(1) << 30));
  else
    std::snprintf(buf, sizeof buf, "%.1f MiB", double(bytes) / double(size_t(1) << 20));
  return buf;
}

void check_memory_fits(Device device, size_t bytes, const std::string& where,
                       const std::string& what) {
  const size_t avail = available_memory(device);
  if (bytes > avail)
    fail(where, what, " needs ", format_gib(bytes), device == Device::cuda ? " on the GPU" : "",
         ", ", format_gib(avail), " available");
}

}  // namespace muongpt
