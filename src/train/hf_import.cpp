#include "metalm/train/hf_import.hpp"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/io/hf_gpt2.hpp"
#include "metalm/io/safetensors.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/parameter_count.hpp"
#include "metalm/model/weights.hpp"
#include "metalm/train/checkpoint.hpp"

namespace metalm {
namespace {

namespace fs = std::filesystem;

// "gpt2" for "/models/gpt2/" as well as "/models/gpt2".
std::string dir_name(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace

ImportHfResult import_hf_gpt2(const std::string& hf_dir, const std::string& out_dir, const ImportHfOptions& options) {
  HfGpt2Checkpoint hf = read_hf_gpt2(hf_dir);
  ImportHfResult r;
  r.config.name = options.name.empty() ? dir_name(hf_dir) : options.name;
  r.config.model = hf.model;
  resolve(r.config);

  CausalTransformer model(r.config.model);
  load_weights(*model, hf.weights.tensors, hf.files.front());
  hf.weights.tensors.clear();  // the model holds its own copy now

  r.checkpoint_dir = out_dir;
  r.tokenizer = hf.tokenizer;
  r.n_params = count_parameters(*model);
  r.key_prefix = hf.weights.key_prefix;
  r.dtypes.assign(hf.weights.dtypes.begin(), hf.weights.dtypes.end());
  r.ignored_tensors = static_cast<int64_t>(hf.weights.ignored.size());
  if (r.tokenizer.empty())
    spdlog::warn("{}: vocab_size {} is not GPT-2's {}: no tokenizer recorded in the checkpoint", hf_dir,
                 r.config.model.vocab_size, kGpt2VocabSize);

  CheckpointState state;
  state.step = 0;
  state.tokenizer = r.tokenizer;
  state.best_val_loss = std::numeric_limits<double>::infinity();
  state.extra = {
      {"source", "import-hf"},
      {"from", fs::absolute(hf_dir).lexically_normal().string()},
      {"hf_architecture", hf.architecture},
      {"hf_key_prefix", r.key_prefix},
      {"hf_dtypes", r.dtypes},
      {"hf_ignored_tensors", hf.weights.ignored},
      {"hf_config", hf.hf_config},
  };
  save_checkpoint(out_dir, r.config, model, nullptr, state);
  return r;
}

void export_weights(const std::string& checkpoint, const std::string& out_file, WeightsLayout layout,
                    const std::string& hf_config_path, const LoadWeightsOptions& weights) {
  if (!hf_config_path.empty() && layout != WeightsLayout::Hf)
    throw ConfigError("export: a Hugging Face config.json is only written with the hf layout");
  LoadedCheckpoint ck = load_checkpoint(checkpoint, weights);
  const ModelConfig& cfg = ck.config.model;
  if (layout == WeightsLayout::Hf) require_gpt2_compatible(cfg);  // before anything is written

  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : ck.model->named_parameters(/*recurse=*/true)) tensors.emplace(p.key(), p.value().detach());
  std::map<std::string, std::string> metadata = {
      {"metalm.config", to_json(cfg).dump()},
      {"metalm.tokenizer", ck.state.tokenizer},
      {"metalm.step", std::to_string(ck.state.step)},
      {"metalm.layout", layout == WeightsLayout::Hf ? "hf" : "metalm"},
  };
  if (layout == WeightsLayout::Hf) {
    tensors = metalm_to_hf_gpt2(tensors, cfg);
    metadata["format"] = "pt";  // transformers refuses safetensors files without it
  } else {
    metadata["format"] = "metalm";
  }
  // A failed export leaves nothing behind: neither the weights written before
  // the config failed, nor the directories it made for them.
  std::vector<fs::path> made;  // directories this export created, outermost first
  std::vector<std::string> written;
  const auto make_parents = [&made](const fs::path& file) {
    std::vector<fs::path> missing;
    for (fs::path p = file.parent_path(); !p.empty() && !fs::exists(p); p = p.parent_path()) missing.push_back(p);
    for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
      fs::create_directory(*it);
      made.push_back(*it);
    }
  };
  try {
    make_parents(fs::path(out_file));
    write_safetensors(out_file, tensors, metadata);
    written.push_back(out_file);
    if (!hf_config_path.empty()) {
      make_parents(fs::path(hf_config_path));
      write_json_file(hf_config_path, hf_gpt2_config_json(cfg));
    }
  } catch (...) {
    std::error_code ec;
    for (const auto& f : written) fs::remove(f, ec);
    for (auto it = made.rbegin(); it != made.rend(); ++it) fs::remove(*it, ec);  // empty ones only
    throw;
  }
}

}  // namespace metalm
