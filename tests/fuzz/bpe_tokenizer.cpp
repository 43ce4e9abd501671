// Fuzz target: a BPE tokenizer's two files (encoder.json and vocab.bpe, as
// `gpt2:DIR` / `bpe:DIR` load them), then encoding a text with it. The input
// is the three parts separated by 0x1e bytes: encoder.json, vocab.bpe, text.
// A loaded tokenizer must decode what it encodes back to the same text.
#include "fuzz_util.hpp"
#include "metalm/data/tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  const std::vector<std::string_view> parts = fuzz::split(fuzz::as_text(data, size), '\x1e');
  fuzz::write_scratch("encoder.json", parts[0]);
  fuzz::write_scratch("vocab.bpe", parts.size() > 1 ? parts[1] : std::string_view());
  const std::string_view text = parts.size() > 2 ? parts[2] : std::string_view();
  fuzz::expect_errors([&] {
    const auto tokenizer = make_tokenizer("bpe:" + fuzz::scratch_dir());
    const std::vector<int64_t> ids = tokenizer->encode(text);
    for (const int64_t id : ids)
      fuzz::require(id >= 0 && id < tokenizer->vocab_size() && id != tokenizer->eot_id(), "ids are ordinary tokens");
    fuzz::require(tokenizer->decode(ids) == text, "decode(encode(text)) == text");
  });
  return 0;
}
