// UTF-8 validation and repair (core/utf8.h).
#include "core/utf8.h"

#include <cstdint>
#include <cstring>

namespace muongpt {

namespace {

// For a lead byte: the number of bytes of its sequence and the range of the second byte
// (Unicode Table 3-7, well-formed UTF-8); len 0 for a byte that cannot start a sequence.
struct Lead {
  uint8_t len, lo, hi;
};
constexpr Lead lead_of(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};  // continuation bytes, and overlong C0, C1
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};  // no overlongs
  if (b == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};  // no overlongs
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  return {0, 0, 0};
}

// Length of the well-formed sequence at s[i], or 0 with *consumed = the maximal subpart that is
// ill-formed (at least 1 byte).
size_t utf8_sequence(std::string_view s, size_t i, size_t* consumed) {
  const uint8_t b = static_cast<uint8_t>(s[i]);
  const Lead l = lead_of(b);
  if (l.len == 1) return 1;
  *consumed = 1;
  if (l.len == 0) return 0;
  for (size_t k = 1; k < l.len; ++k) {
    if (i + k >= s.size()) return 0;
    const uint8_t c = static_cast<uint8_t>(s[i + k]);
    const uint8_t lo = k == 1 ? l.lo : 0x80, hi = k == 1 ? l.hi : 0xBF;
    if (c < lo || c > hi) return 0;
    *consumed = k + 1;
  }
  return l.len;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // Eight ASCII bytes at a time.
    if (i + 8 <= n) {
      uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if ((w & 0x8080808080808080ull) == 0) {
        i += 8;
        continue;
      }
    }
    size_t consumed = 0;
    const size_t len = utf8_sequence(s, i, &consumed);
    if (len == 0) return false;
    i += len;
  }
  return true;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 16);
  size_t i = 0;
  while (i < s.size()) {
    size_t consumed = 0;
    const size_t len = utf8_sequence(s, i, &consumed);
    if (len > 0) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out.append("\xEF\xBF\xBD");
      i += consumed;
    }
  }
  return out;
}

}  // namespace muongpt
