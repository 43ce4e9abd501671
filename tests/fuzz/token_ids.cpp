// Fuzz target: the CLI's text form of token ids (eval/analyze --ids,
// tokenize --decode). What it accepts prints back to the same ids.
#include "../../apps/token_ids.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  fuzz::expect_errors([&] {
    const std::vector<int64_t> ids = cli::parse_token_ids(std::string(fuzz::as_text(data, size)), "input");
    std::string printed;
    for (const int64_t id : ids) {
      fuzz::require(id >= 0, "ids are non-negative");
      printed += std::to_string(id) + " ";
    }
    fuzz::require(cli::parse_token_ids(printed, "printed") == ids, "printed ids read back identical");
  });
  return 0;
}
