// Fuzz target: the CLI's text form of token ids (eval/analyze --ids,
// tokenize --decode). What it accepts prints back to the same ids, and the
// vocabulary check refuses exactly the texts holding an id beyond it.
#include "../../apps/token_ids.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  constexpr int64_t kVocab = 1000;
  const std::string text(fuzz::as_text(data, size));
  fuzz::expect_errors([&] {
    const std::vector<int64_t> ids = cli::parse_token_ids(text, "input");
    std::string printed;
    bool beyond = false;
    for (const int64_t id : ids) {
      fuzz::require(id >= 0, "ids are non-negative");
      beyond = beyond || id >= kVocab;
      printed += std::to_string(id) + " ";
    }
    fuzz::require(cli::parse_token_ids(printed, "printed") == ids, "printed ids read back identical");
    bool refused = false;
    try {
      fuzz::require(cli::parse_token_ids(text, "input", kVocab, "the vocabulary") == ids,
                    "the vocabulary check changes no id");
    } catch (const FormatError&) {
      refused = true;
    }
    fuzz::require(refused == beyond, "the vocabulary check refuses exactly the ids beyond it");
  });
  return 0;
}
