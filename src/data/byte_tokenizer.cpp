#include "metalm/data/byte_tokenizer.hpp"

#include "metalm/core/error.hpp"

namespace metalm {

std::vector<int64_t> ByteTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> ids(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
  return ids;
}

std::string ByteTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  out.reserve(ids.size());
  for (const int64_t id : ids) {
    if (id == eot_id()) continue;
    if (id < 0 || id > 255)
      throw FormatError("byte tokenizer: token id " + std::to_string(id) + " outside [0, 257)");
    out += static_cast<char>(id);
  }
  return out;
}

}  // namespace metalm
