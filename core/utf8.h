// Well-formed UTF-8: what TOML files, the tokenizer and anything saved as text require.
#pragma once

#include <string>
#include <string_view>

namespace muongpt {

// True when `s` is well-formed UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
bool is_valid_utf8(std::string_view s);
// `s` with every maximal ill-formed subsequence replaced by U+FFFD (EF BF BD): the Unicode
// "maximal subpart" practice, which is what Python's bytes.decode("utf-8", "replace") does.
std::string sanitize_utf8(std::string_view s);

}  // namespace muongpt
