#include "token_ids.hpp"

#include <cctype>

#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/data/tokenizer.hpp"

namespace metalm::cli {

std::vector<int64_t> parse_token_ids(const std::string& text, const std::string& origin, int64_t vocab,
                                     const std::string& vocab_name) {
  std::vector<int64_t> ids;
  std::size_t pos = 0;
  while (pos < text.size()) {
    if (std::isspace(static_cast<unsigned char>(text[pos]))) {
      ++pos;
      continue;
    }
    std::size_t end = pos;
    while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end]))) ++end;
    const std::string word = text.substr(pos, end - pos);
    if (word.find_first_not_of("0123456789") != std::string::npos || word.size() > 12)
      throw FormatError(origin + ": \"" + excerpt(word) + "\" at byte " + std::to_string(pos) + " is not a token id");
    const int64_t id = std::stoll(word);
    if (vocab > 0 && id >= vocab)
      throw FormatError(origin + ": token id " + word + " is outside " + vocab_name + " [0, " + std::to_string(vocab) +
                        ") (id number " + std::to_string(ids.size() + 1) + ", at byte " + std::to_string(pos) + ")");
    ids.push_back(id);
    pos = end;
  }
  return ids;
}

std::vector<int64_t> read_token_ids(const std::string& path, int64_t vocab) {
  std::vector<int64_t> ids =
      parse_token_ids(read_file(path, InputKind::Text), path, vocab, "the model's vocabulary");
  if (ids.empty()) throw FormatError(path + ": no token ids (the file is empty or only whitespace)");
  return ids;
}

std::vector<int64_t> encode_text(const Tokenizer& tok, const std::string& text, const std::string& path) {
  try {
    return tok.encode(text);
  } catch (const FormatError& e) {
    throw FormatError(path + ": " + e.what());
  }
}

std::vector<int64_t> read_text_ids(const Tokenizer& tok, const std::string& path) {
  return encode_text(tok, read_file(path, InputKind::Text), path);
}

}  // namespace metalm::cli
