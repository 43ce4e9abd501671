// Fuzz target: a Hugging Face shard index (model.safetensors.index.json) as
// read_hf_gpt2 reads it, beside a fixed valid tiny GPT-2 in two shards
// (a.safetensors: the embeddings; b.safetensors: the rest). An index it
// accepts must name, for every tensor, the shard that holds it: the weights
// read are then the whole model.
#include <filesystem>
#include <fstream>

#include "fuzz_util.hpp"
#include "metalm/io/hf_gpt2.hpp"
#include "metalm/io/safetensors.hpp"

namespace {

using nlohmann::json;

// The model folder, written once per process.
const std::string& model_dir() {
  static const std::string dir = [] {
    const std::string d = metalm::fuzz::scratch_dir() + "/model";
    std::filesystem::create_directories(d);
    const json config = {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"n_embd", 8},
                         {"n_head", 2}, {"n_layer", 1}, {"n_positions", 6}, {"vocab_size", 11}};
    std::ofstream(d + "/config.json") << config.dump();
    std::map<std::string, torch::Tensor> a, b;
    for (const auto& n : metalm::gpt2_tensor_names(metalm::hf_gpt2_model_config(config, "fuzz"))) {
      const bool embedding = n.hf == "wte.weight" || n.hf == "wpe.weight";
      (embedding ? a : b)[n.hf] = torch::zeros(n.hf_shape);
    }
    metalm::write_safetensors(d + "/a.safetensors", a);
    metalm::write_safetensors(d + "/b.safetensors", b);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  const std::string& dir = model_dir();
  {
    std::ofstream out(dir + "/model.safetensors.index.json", std::ios::binary | std::ios::trunc);
    const std::string_view text = fuzz::as_text(data, size);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
  }
  fuzz::expect_errors([&] {
    const HfGpt2Checkpoint ck = read_hf_gpt2(dir);
    fuzz::require(ck.weights.tensors.size() == gpt2_tensor_names(ck.model).size(),
                  "an accepted index reads every tensor");
  });
  return 0;
}
