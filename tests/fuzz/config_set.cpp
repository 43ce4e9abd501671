// Fuzz target: `--set section.key=value` overrides (one per non-empty line
// of the input), applied to the defaults and resolved as `metalm train --set` does.
// A config they produce must come back identical from its own JSON.
#include "fuzz_util.hpp"
#include "metalm/config/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  std::vector<std::string> overrides;
  for (const std::string_view line : fuzz::split(fuzz::as_text(data, size), '\n'))
    if (!line.empty()) overrides.emplace_back(line);
  fuzz::expect_errors([&] {
    const RunConfig config = load_run_config("", overrides);
    const nlohmann::json written = to_json(config);
    const std::string resolved = fuzz::write_scratch("resolved.json", written.dump(2));
    const RunConfig again = load_run_config(resolved);
    fuzz::require(to_json(again) == written, "an overridden config reads back identical");
  });
  return 0;
}
