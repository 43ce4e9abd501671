// The simplest tokenizer: one id per byte (0..255) and end-of-text = 256.
// Any bytes round-trip exactly, valid UTF-8 or not.
#pragma once

#include "metalm/data/tokenizer.hpp"

namespace metalm {

class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int64_t> encode(std::string_view text) const override;
  // The end-of-text id decodes to nothing.
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return 257; }
  int64_t eot_id() const override { return 256; }
  std::string spec() const override { return "byte"; }
};

}  // namespace metalm
