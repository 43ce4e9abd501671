#include "metalm/data/unicode.hpp"

#include <utf8proc.h>

#include <unordered_map>

#include "metalm/core/error.hpp"

namespace metalm::unicode {
namespace {

CharClass classify_slow(char32_t cp) {
  // White_Space is not a general category: it is Zs, Zl, Zp plus the controls
  // U+0009..U+000D and U+0085 (the Rust regex crate's \s, which tiktoken uses).
  if ((cp >= 0x09 && cp <= 0x0D) || cp == 0x85) return CharClass::Space;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(cp))) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
      return CharClass::Letter;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
      return CharClass::Number;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
      return CharClass::Space;
    default:
      return CharClass::Other;
  }
}

struct AsciiTable {
  std::array<CharClass, 128> cls{};
  AsciiTable() {
    for (char32_t c = 0; c < 128; ++c) cls[c] = classify_slow(c);
  }
};

[[noreturn]] void invalid(std::size_t offset, const std::string& what) {
  throw FormatError("invalid UTF-8 at byte offset " + std::to_string(offset) + ": " + what);
}

}  // namespace

CharClass classify(char32_t cp) {
  static const AsciiTable ascii;
  if (cp < 128) return ascii.cls[cp];
  return classify_slow(cp);
}

int decode_utf8(std::string_view text, std::size_t pos, char32_t& cp, std::size_t base) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  const unsigned char b0 = s[pos];
  if (b0 < 0x80) {
    cp = b0;
    return 1;
  }
  int len;
  char32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    invalid(base + pos, "byte 0x" + std::string(1, "0123456789abcdef"[b0 >> 4]) +
                            std::string(1, "0123456789abcdef"[b0 & 15]) + " cannot start a character");
  }
  if (pos + len > n) invalid(base + pos, "truncated sequence");
  for (int i = 1; i < len; ++i) {
    const unsigned char b = s[pos + i];
    if ((b & 0xC0) != 0x80) invalid(base + pos + i, "expected a continuation byte");
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min) invalid(base + pos, "overlong encoding");
  if (cp >= 0xD800 && cp <= 0xDFFF) invalid(base + pos, "surrogate code point");
  if (cp > 0x10FFFF) invalid(base + pos, "code point above U+10FFFF");
  return len;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

const std::array<char32_t, 256>& byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    // Printable Latin-1 bytes keep their own character; the rest are moved
    // to U+0100 onwards in byte order, as GPT-2's bytes_to_unicode() does.
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      t[b] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

std::string token_bytes_from_unicode(std::string_view spelled) {
  static const std::unordered_map<char32_t, unsigned char> inverse = [] {
    std::unordered_map<char32_t, unsigned char> m;
    for (int b = 0; b < 256; ++b) m[byte_to_unicode()[b]] = static_cast<unsigned char>(b);
    return m;
  }();
  std::string out;
  std::size_t pos = 0;
  while (pos < spelled.size()) {
    char32_t cp;
    pos += decode_utf8(spelled, pos, cp);
    const auto it = inverse.find(cp);
    if (it == inverse.end())
      throw FormatError("token '" + std::string(spelled) + "' has a character outside GPT-2's byte mapping");
    out += static_cast<char>(it->second);
  }
  return out;
}

std::string token_unicode_from_bytes(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) append_utf8(out, byte_to_unicode()[b]);
  return out;
}

}  // namespace metalm::unicode
