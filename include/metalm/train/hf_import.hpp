// `metalm import-hf` and `metalm export` as library calls: a Hugging Face
// GPT-2 directory -> a metalm checkpoint (eval, analyze and generate read it
// like any other), and a checkpoint -> one safetensors file for Python users.
// The name/layout mapping itself is io/hf_gpt2.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"
#include "metalm/model/weights.hpp"

namespace metalm {

struct ImportHfOptions {
  std::string name;  // RunConfig.name; "" means the source directory's name
};

struct ImportHfResult {
  std::string checkpoint_dir;
  RunConfig config;
  std::string tokenizer;  // "gpt2" or "" (unknown vocabulary)
  int64_t n_params = 0;
  std::string key_prefix;            // "transformer." or ""
  std::vector<std::string> dtypes;   // stored dtypes of the source weights
  int64_t ignored_tensors = 0;       // mask buffers, tied lm_head copy
};

// Reads HF_DIR (config.json + model.safetensors), builds the model, loads the
// weights strictly and writes a checkpoint (no optimizer state) to out_dir,
// atomically. state.json records tokenizer "gpt2" when vocab_size = 50257 and
// extra = {"source": "import-hf", "from": HF_DIR, "hf_architecture", ...}.
// Throws ConfigError/IoError/FormatError naming the file, key or tensor.
ImportHfResult import_hf_gpt2(const std::string& hf_dir, const std::string& out_dir,
                              const ImportHfOptions& options = {});

enum class WeightsLayout {
  Metalm,  // metalm's parameter names, torch Linear layout [out, in]
  Hf,      // GPT2LMHeadModel's names ("transformer." ...) and Conv1D layout [in, out]
};

// Writes the weights of a checkpoint (directory or run directory: the newest)
// to one safetensors file. "__metadata__" holds "format" ("metalm" or "pt"),
// "metalm.config" (the ModelConfig JSON) and "metalm.tokenizer". With the Hf
// layout the model must have a GPT-2 equivalent (ConfigError otherwise), and
// when hf_config_path is not empty the matching config.json is written there,
// so a directory holding both loads with GPT2LMHeadModel.from_pretrained.
// `weights.allow_nonfinite` exports a checkpoint holding NaN or Inf as it is.
void export_weights(const std::string& checkpoint, const std::string& out_file, WeightsLayout layout,
                    const std::string& hf_config_path = "", const LoadWeightsOptions& weights = {});

}  // namespace metalm
