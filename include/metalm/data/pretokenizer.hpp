// GPT-2's pre-tokenisation, written by hand (no std::regex) to match
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// exactly, as tiktoken's gpt2 encoding applies it: contractions first, then
// letter runs, number runs and symbol runs (each may take one leading U+0020),
// and whitespace runs that leave their last character to the next piece when
// a non-space follows.
#pragma once

#include <cstddef>
#include <functional>
#include <string_view>

namespace metalm {

// Calls `piece` for each pre-token, in order; the pieces tile `text`.
// Throws FormatError (with byte offset) on invalid UTF-8.
template <typename F>
void gpt2_pretokenize(std::string_view text, F&& piece);

namespace detail {
// Length in bytes of the pre-token that starts at `pos` (pos < text.size()).
std::size_t gpt2_piece_length(std::string_view text, std::size_t pos);
}  // namespace detail

template <typename F>
void gpt2_pretokenize(std::string_view text, F&& piece) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t n = detail::gpt2_piece_length(text, pos);
    piece(text.substr(pos, n));
    pos += n;
  }
}

}  // namespace metalm
