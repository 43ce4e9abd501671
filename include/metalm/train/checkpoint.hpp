// Checkpoints: a directory that holds everything needed to evaluate, analyse
// or resume a run.
//
//   DIR/config.json        the resolved RunConfig
//   DIR/model.safetensors  the model's weights (save_weights)
//   DIR/optimizer.pt       AdamW state (torch::save); absent for imported models
//   DIR/state.json         {"format":"metalm-checkpoint","version":1,"step",
//                           "tokenizer", "best_val_loss", "rng", "sampler", ...}
//
// A checkpoint is written under DIR.tmp-<pid> and renamed into place once
// complete, so a crash mid-write leaves the previous checkpoint intact and a
// half-written directory is never taken for a checkpoint. Run directories keep
// their checkpoints as RUN_DIR/checkpoints/step_<NNNNNNNN>.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"
#include "metalm/model/causal_transformer.hpp"

namespace torch::optim {
class Optimizer;
}

namespace metalm {

struct CheckpointState {
  int64_t step = 0;
  std::string tokenizer;  // tokenizer spec ("byte", "gpt2", "bpe:DIR"); "" if unknown
  double best_val_loss = 0;  // +inf until the first evaluation (stored as null)
  nlohmann::json rng;        // generator states (trainer-defined)
  nlohmann::json sampler;    // data sampler state
  nlohmann::json extra;      // anything else worth keeping (e.g. "source": "import-hf")
};

// Writes a complete checkpoint to `dir` atomically (temp dir, then rename;
// an existing `dir` is replaced). `optimizer` may be null.
void save_checkpoint(const std::string& dir, const RunConfig& config, CausalTransformer& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointState& state);

struct LoadedCheckpoint {
  std::string path;  // the checkpoint directory actually loaded
  RunConfig config;
  CausalTransformer model{nullptr};
  CheckpointState state;
  bool has_optimizer = false;
};

// Loads a checkpoint directory, or the newest complete checkpoint of a run
// directory. Errors (IoError/FormatError) name the file and what is wrong.
LoadedCheckpoint load_checkpoint(const std::string& dir_or_run_dir);

// Restores the optimizer state saved with the checkpoint at `dir`.
void load_optimizer_state(const std::string& dir, torch::optim::Optimizer& optimizer);

// Complete checkpoints of a run directory, oldest first (step order).
std::vector<std::string> list_checkpoints(const std::string& run_dir);

// The checkpoint directory for `step` in a run directory.
std::string checkpoint_dir(const std::string& run_dir, int64_t step);

}  // namespace metalm
