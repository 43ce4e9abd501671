#include "metalm/data/pretokenizer.hpp"

#include "metalm/data/unicode.hpp"

namespace metalm::detail {
namespace {

using unicode::CharClass;

// Code point at `pos` with its class; ASCII without decoding.
inline CharClass class_at(std::string_view text, std::size_t pos, int& len) {
  const unsigned char b = static_cast<unsigned char>(text[pos]);
  if (b < 0x80) {
    len = 1;
    return unicode::classify(b);
  }
  char32_t cp;
  len = unicode::decode_utf8(text, pos, cp);
  return unicode::classify(cp);
}

// End of the run of characters of class `cls` starting at `pos`; `count`
// receives the number of characters and `last_len` the last one's length.
inline std::size_t run_end(std::string_view text, std::size_t pos, CharClass cls, std::size_t& count,
                           int& last_len) {
  count = 0;
  last_len = 0;
  while (pos < text.size()) {
    int len;
    if (class_at(text, pos, len) != cls) break;
    pos += len;
    last_len = len;
    ++count;
  }
  return pos;
}

// 's 't 're 've 'm 'll 'd (lower case only, as in GPT-2's pattern).
inline std::size_t contraction_length(std::string_view text, std::size_t pos) {
  if (pos + 1 >= text.size()) return 0;
  const char a = text[pos + 1];
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (pos + 2 >= text.size()) return 0;
  const char b = text[pos + 2];
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

}  // namespace

std::size_t gpt2_piece_length(std::string_view text, std::size_t pos) {
  if (text[pos] == '\'') {
    if (const std::size_t n = contraction_length(text, pos)) return n;
  }
  std::size_t count;
  int last_len;
  int len0;
  const CharClass c0 = class_at(text, pos, len0);
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: one U+0020 may lead a run.
  if (text[pos] == ' ' && pos + 1 < text.size()) {
    int len1;
    const CharClass c1 = class_at(text, pos + 1, len1);
    if (c1 != CharClass::Space) return run_end(text, pos + 1, c1, count, last_len) - pos;
  }
  if (c0 != CharClass::Space) return run_end(text, pos, c0, count, last_len) - pos;
  // `\s+(?!\S)` backs off one character when a non-space follows, leaving
  // it to lead the next word; a single space before a non-space falls to `\s+`.
  const std::size_t end = run_end(text, pos, CharClass::Space, count, last_len);
  if (end == text.size() || count == 1) return end - pos;
  return end - pos - last_len;
}

}  // namespace metalm::detail
