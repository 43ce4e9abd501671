// Fuzz target: a Hugging Face GPT-2 config.json (metalm import-hf), read as
// read_hf_gpt2 reads it and mapped to a ModelConfig. What it accepts must map
// back and forth unchanged, as hf_gpt2.hpp promises.
#include "fuzz_util.hpp"
#include "metalm/config/json.hpp"
#include "metalm/io/hf_gpt2.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  const std::string path = fuzz::write_scratch("config.json", fuzz::as_text(data, size));
  fuzz::expect_errors([&] {
    const ModelConfig model = hf_gpt2_model_config(read_json_file(path), path);
    const ModelConfig again = hf_gpt2_model_config(hf_gpt2_config_json(model), "round trip");
    fuzz::require(to_json(again) == to_json(model), "the Hugging Face mapping round-trips");
  });
  return 0;
}
