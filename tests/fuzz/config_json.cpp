// Fuzz target: experiment configs (--config FILE, a checkpoint's config.json),
// through load_run_config: JSON parse, strict typed reading, resolve. A config
// it accepts must come back identical from its own JSON, as a resumed run
// reads the config.json written next to its checkpoints.
#include "fuzz_util.hpp"
#include "metalm/config/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  const std::string path = fuzz::write_scratch("config.json", fuzz::as_text(data, size));
  fuzz::expect_errors([&] {
    const RunConfig config = load_run_config(path);
    const nlohmann::json written = to_json(config);
    const std::string resolved = fuzz::write_scratch("resolved.json", written.dump(2));
    const RunConfig again = load_run_config(resolved);
    fuzz::require(to_json(again) == written, "a resolved config reads back identical");
  });
  return 0;
}
