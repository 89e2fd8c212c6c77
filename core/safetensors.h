// The safetensors format (what Python's `safetensors` reads and writes): an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}},
// then the raw little-endian tensor bytes. Used for fixtures and model checkpoints.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace muongpt {

struct SafetensorsEntry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  size_t offset = 0;  // into the data section
  size_t nbytes = 0;
  int64_t numel() const;
};

class SafetensorsFile {
 public:
  // Reads and validates the whole file; every problem is an Error naming `path`.
  explicit SafetensorsFile(const std::string& path);
  // Tensors held in memory, as the file of them would read back (`name` names them in errors):
  // for state that changes hands without a file (the criterion routing's optimizer switch).
  static SafetensorsFile from_tensors(const std::string& name,
                                      const std::vector<struct SafetensorsTensor>& tensors);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Metadata value, or an Error naming the key when it is absent.
  const std::string& meta(const std::string& key) const;
  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const SafetensorsEntry& entry(const std::string& name) const;
  std::vector<std::string> names() const;
  const void* data(const std::string& name) const;

  // The tensor's values converted to T (from F64, F32, BF16, I64, I32 or U16).
  template <typename T>
  std::vector<T> read(const std::string& name) const;

 private:
  SafetensorsFile(std::string path, std::string bytes);
  std::string path_;
  std::string bytes_;
  size_t data_start_ = 0;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// One tensor to write: raw little-endian bytes of `numel(shape)` elements of `dtype`.
struct SafetensorsTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;
};

// The bytes of a safetensors file holding `tensors` (in the given order).
std::string encode_safetensors(const std::vector<SafetensorsTensor>& tensors,
                               const std::map<std::string, std::string>& metadata = {});
// Writes `path` (tensors in the given order). Errors name the path.
void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace muongpt
