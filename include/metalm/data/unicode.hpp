// The few Unicode facts the GPT-2 pre-tokenizer needs: strict UTF-8 decoding
// and the Letter / Number / White_Space classes (from utf8proc's tables, not
// ASCII approximations), plus GPT-2's byte <-> printable-character mapping.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace metalm::unicode {

// Character classes of the GPT-2 pattern: \p{L}, \p{N}, \s, anything else.
enum class CharClass : uint8_t { Letter, Number, Space, Other };

CharClass classify(char32_t cp);

// Decodes the code point starting at text[pos] and returns its length in
// bytes (1..4). Rejects overlong forms, surrogates and values > U+10FFFF:
// throws FormatError naming the byte offset `base + pos`.
int decode_utf8(std::string_view text, std::size_t pos, char32_t& cp, std::size_t base = 0);

void append_utf8(std::string& out, char32_t cp);

// GPT-2's bytes_to_unicode(): each byte maps to a printable character; the
// files encoder.json/vocab.bpe spell tokens in these characters.
const std::array<char32_t, 256>& byte_to_unicode();

// The raw bytes behind a token spelled in byte_to_unicode characters. Throws
// FormatError when a character is not in the mapping.
std::string token_bytes_from_unicode(std::string_view spelled);
std::string token_unicode_from_bytes(std::string_view bytes);

}  // namespace metalm::unicode
