#include "token_ids.hpp"

#include <cctype>

#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"

namespace metalm::cli {

std::vector<int64_t> parse_token_ids(const std::string& text, const std::string& origin) {
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
    ids.push_back(std::stoll(word));
    pos = end;
  }
  return ids;
}

std::vector<int64_t> read_token_ids(const std::string& path, int64_t vocab) {
  std::vector<int64_t> ids = parse_token_ids(read_file(path), path);
  if (ids.empty()) throw FormatError(path + ": no token ids (the file is empty or only whitespace)");
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= vocab)
      throw FormatError(path + ": token id " + std::to_string(ids[i]) + " is outside the model's vocabulary [0, " +
                        std::to_string(vocab) + ") (id number " + std::to_string(i + 1) + ")");
  return ids;
}

}  // namespace metalm::cli
