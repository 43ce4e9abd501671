#include "token_ids.hpp"

#include <cctype>

#include "metalm/core/error.hpp"

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
      throw FormatError(origin + ": \"" + word + "\" at byte " + std::to_string(pos) + " is not a token id");
    ids.push_back(std::stoll(word));
    pos = end;
  }
  return ids;
}

}  // namespace metalm::cli
