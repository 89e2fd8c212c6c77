#include "core/safetensors.h"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/files.h"

namespace muongpt {

using json = nlohmann::json;

int64_t SafetensorsEntry::numel() const {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

namespace {
// The whole file, through the regular-file check (a FIFO or a directory is an error, not a hang).
std::string read_file(const std::string& path) {
  try {
    return read_regular_file(path, std::numeric_limits<int64_t>::max());
  } catch (const Error& e) {
    fail(path, "cannot open file: ", e.message());
  }
}
}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path)
    : SafetensorsFile(path, read_file(path)) {}

SafetensorsFile SafetensorsFile::from_tensors(const std::string& name,
                                              const std::vector<SafetensorsTensor>& tensors) {
  return SafetensorsFile(name, encode_safetensors(tensors));
}

SafetensorsFile::SafetensorsFile(std::string name, std::string bytes)
    : path_(std::move(name)), bytes_(std::move(bytes)) {
  const std::string& path = path_;  // errors below name it
  const size_t size = bytes_.size();

  if (size < 8) fail(path, "not a safetensors file: ", size, " bytes, shorter than its header");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | uint8_t(bytes_[i]);
  if (header_len > size - 8)
    fail(path, "truncated: header says ", header_len, " bytes but the file has ", size - 8);
  data_start_ = 8 + header_len;
  const size_t data_size = size - data_start_;

  json header;
  try {
    header = json::parse(bytes_.begin() + 8, bytes_.begin() + static_cast<long>(data_start_));
  } catch (const json::exception& e) {
    fail(path, "header is not valid JSON: ", untagged(e));
  }
  if (!header.is_object()) fail(path, "header is not a JSON object");

  std::vector<std::pair<size_t, size_t>> ranges;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") {
      if (!v.is_object()) fail(path, "__metadata__ is not an object");
      for (const auto& [k, s] : v.items()) {
        if (!s.is_string()) fail(path, "__metadata__ value for '", k, "' is not a string");
        metadata_[k] = s.get<std::string>();
      }
      continue;
    }
    try {
      SafetensorsEntry e;
      e.name = name;
      std::string dt = v.at("dtype").get<std::string>();
      if (!dtype_from_name(dt, &e.dtype))
        fail(path, "tensor '", name, "' has unsupported dtype ", dt);
      e.shape = v.at("shape").get<std::vector<int64_t>>();
      for (int64_t s : e.shape)
        if (s < 0) fail(path, "tensor '", name, "' has a negative dimension");
      auto off = v.at("data_offsets").get<std::vector<uint64_t>>();
      if (off.size() != 2 || off[0] > off[1] || off[1] > data_size)
        fail(path, "tensor '", name, "' has data offsets outside the file (truncated?)");
      e.offset = off[0];
      e.nbytes = off[1] - off[0];
      if (e.nbytes != static_cast<size_t>(e.numel()) * dtype_size(e.dtype))
        fail(path, "tensor '", name, "' holds ", e.nbytes, " bytes, its shape needs ",
             static_cast<size_t>(e.numel()) * dtype_size(e.dtype));
      ranges.emplace_back(off[0], off[1]);
      entries_[name] = std::move(e);
    } catch (const json::exception& ex) {
      fail(path, "tensor '", name, "' has a malformed header entry: ", untagged(ex));
    }
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    if (ranges[i].first < ranges[i - 1].second) fail(path, "tensors overlap in the data section");
}

const std::string& SafetensorsFile::meta(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) fail(path_, "metadata has no '", key, "'");
  return it->second;
}

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) fail(path_, "no tensor named '", name, "'");
  return it->second;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, e] : entries_) out.push_back(name);
  return out;
}

const void* SafetensorsFile::data(const std::string& name) const {
  return bytes_.data() + data_start_ + entry(name).offset;
}

template <typename T>
std::vector<T> SafetensorsFile::read(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  const char* p = static_cast<const char*>(data(name));
  std::vector<T> out(static_cast<size_t>(e.numel()));
  auto load = [&]<typename S>(S) {
    for (size_t i = 0; i < out.size(); ++i) {
      S s;
      std::memcpy(&s, p + i * sizeof(S), sizeof(S));
      out[i] = static_cast<T>(s);
    }
  };
  switch (e.dtype) {
    case DType::f64:
      load(double{});
      break;
    case DType::f32:
      load(float{});
      break;
    case DType::i64:
      load(int64_t{});
      break;
    case DType::i32:
      load(int32_t{});
      break;
    case DType::u16:
      load(uint16_t{});
      break;
    case DType::u8:
      load(uint8_t{});
      break;
    case DType::bf16:
      for (size_t i = 0; i < out.size(); ++i) {
        uint16_t b;
        std::memcpy(&b, p + i * 2, 2);
        out[i] = static_cast<T>(bf16_to_float(b));
      }
      break;
  }
  return out;
}

template std::vector<float> SafetensorsFile::read<float>(const std::string&) const;
template std::vector<double> SafetensorsFile::read<double>(const std::string&) const;
template std::vector<int32_t> SafetensorsFile::read<int32_t>(const std::string&) const;
template std::vector<int64_t> SafetensorsFile::read<int64_t>(const std::string&) const;

namespace {

size_t tensor_bytes(const SafetensorsTensor& t) {
  int64_t numel = 1;
  for (int64_t s : t.shape) numel *= s;
  return static_cast<size_t>(numel) * dtype_size(t.dtype);
}

// The 8-byte length and the JSON header; the tensors' bytes follow it in order.
std::string header_bytes(const std::vector<SafetensorsTensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& t : tensors) {
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + tensor_bytes(t)}}};
    offset += tensor_bytes(t);
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  std::string bytes(8, '\0');
  const uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) bytes[size_t(i)] = char((len >> (8 * i)) & 0xff);
  return bytes + text;
}

}  // namespace

std::string encode_safetensors(const std::vector<SafetensorsTensor>& tensors,
                               const std::map<std::string, std::string>& metadata) {
  std::string bytes = header_bytes(tensors, metadata);
  for (const auto& t : tensors) bytes.append(static_cast<const char*>(t.data), tensor_bytes(t));
  return bytes;
}

void write_safetensors(const std::string& path, const std::vector<SafetensorsTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) fail(path, "cannot open for writing");
  const std::string header = header_bytes(tensors, metadata);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& t : tensors)  // streamed: a checkpoint is not copied whole in memory
    out.write(static_cast<const char*>(t.data), static_cast<std::streamsize>(tensor_bytes(t)));
  out.flush();
  if (!out) fail(path, "write failed (disk full?)");
}

}  // namespace muongpt
