// Tokenizers turn text into token ids and back. One interface, created from a
// spec string:
//   byte        256 byte ids + end-of-text (id 256)
//   gpt2        GPT-2's byte-level BPE from $METALM_DATA/gpt2 (METALM_DATA
//               defaults to "data"; scripts/dev/setup.sh fetches it)
//   gpt2:DIR    GPT-2's BPE from DIR/encoder.json and DIR/vocab.bpe
//   bpe:DIR     a BPE trained by `metalm tokenizer-train`, same two files
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace metalm {

// Text <-> token ids; make_tokenizer() builds one from its spec.
class Tokenizer {
 public:
  virtual ~Tokenizer();
  // Throws FormatError naming the byte offset when a text tokenizer is given
  // invalid UTF-8. The end-of-text marker inside text is ordinary text.
  virtual std::vector<int64_t> encode(std::string_view text) const = 0;
  // Throws FormatError on an id outside [0, vocab_size). The end-of-text id
  // decodes to its marker ("<|endoftext|>" for BPE tokenizers, "" for byte).
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  // Number of ids (end-of-text included), and the end-of-text id that
  // `metalm prepare` puts after every document.
  virtual int64_t vocab_size() const = 0;
  virtual int64_t eot_id() const = 0;
  // The spec that recreates this tokenizer with make_tokenizer().
  virtual std::string spec() const = 0;
};

// Throws ConfigError on an unknown spec, IoError/FormatError on missing or
// malformed tokenizer files.
std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec);

// The directory the plain `gpt2` spec reads: $METALM_DATA/gpt2, "data/gpt2"
// when METALM_DATA is unset.
std::string default_gpt2_dir();

}  // namespace metalm
