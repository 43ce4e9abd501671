// Fuzz target: token files (train.bin / val.bin), opened as every command
// opens them (TokenDataset maps the file and parses the header). A file it
// accepts holds exactly its header's count of ids, each readable.
#include "fuzz_util.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/data/token_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  const std::string path = fuzz::write_scratch("input.bin", fuzz::as_text(data, size));
  fuzz::expect_errors([&] {
    const TokenDataset tokens(path);
    const TokenFileHeader h = parse_token_file_header(data, size, path);
    fuzz::require(tokens.size() == h.count && tokens.vocab_size() == h.vocab_size, "the dataset reports its header");
    fuzz::require(TokenFileHeader::kBytes + static_cast<std::size_t>(h.count) * h.id_bytes == size,
                  "an accepted file holds exactly count ids");
    const at::Tensor all = tokens.slice(0, tokens.size());
    fuzz::require(all.numel() == tokens.size(), "the whole file slices");
    if (tokens.size() > 0) fuzz::require(all[-1].item<int64_t>() == tokens.token(tokens.size() - 1), "slice and token agree");
  });
  return 0;
}
