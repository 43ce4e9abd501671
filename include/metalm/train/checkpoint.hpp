// Checkpoints: a directory that holds everything needed to evaluate, analyse
// or resume a run.
//
//   DIR/config.json        the resolved RunConfig
//   DIR/model.safetensors  the model's weights (save_weights)
//   DIR/optimizer.pt       AdamW state (torch::save); absent for imported models
//   DIR/state.json         {"format":"metalm-checkpoint","version":1,"step",
//                           "tokenizer", "best_val_loss", "rng", "sampler", ...}
//
// A checkpoint is written under DIR.tmp-<pid>, read back, fsync'd and renamed
// into place (core/atomic_file.hpp), so a crash, a full disk or a power loss
// mid-write leaves the previous checkpoint intact and a half-written directory
// is never taken for a checkpoint. Run directories keep their checkpoints as
// RUN_DIR/checkpoints/step_<NNNNNNNN>. The step is the one in state.json; a
// folder named step_N must hold step N (a renamed or copied checkpoint is
// refused, not trusted).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/weights.hpp"

namespace torch::optim {
class Optimizer;
}

namespace metalm {

// What a checkpoint records besides config, weights and optimizer
// (state.json).
struct CheckpointState {
  int64_t step = 0;
  std::string tokenizer;  // tokenizer spec ("byte", "gpt2", "bpe:DIR"); "" if unknown
  double best_val_loss = 0;  // +inf until the first evaluation (stored as null)
  nlohmann::json rng;        // generator states (trainer-defined)
  nlohmann::json sampler;    // data sampler state
  nlohmann::json extra;      // anything else worth keeping (e.g. "source": "import-hf")
};

// Writes a complete checkpoint to `dir` atomically (temp dir, read back,
// then rename; an existing directory `dir` is replaced). `optimizer` may be
// null. Throws IoError("cannot write checkpoint DIR: ...") and leaves `dir`
// as it was on any failure.
void save_checkpoint(const std::string& dir, const RunConfig& config, CausalTransformer& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointState& state);

// A checkpoint read back: its config (resolved), the model with its weights
// loaded and its state. The model is a new module, in train mode: call
// eval() before measuring anything (dropout).
struct LoadedCheckpoint {
  std::string path;  // the checkpoint directory actually loaded
  RunConfig config;
  CausalTransformer model{nullptr};
  CheckpointState state;
  bool has_optimizer = false;
};

// Loads a checkpoint directory, or the newest complete checkpoint of a run
// directory. Errors (IoError/FormatError) name the file and what is wrong,
// including a folder named step_N whose state.json holds another step.
// `weights` lets eval/analyze/generate/export load non-finite weights.
LoadedCheckpoint load_checkpoint(const std::string& dir_or_run_dir, const LoadWeightsOptions& weights = {});

// The directory load_checkpoint(dir_or_run_dir) reads: the directory itself
// when it holds a state.json, else the newest checkpoint of the run
// directory (IoError when there is none), so that a command can keep its
// outputs out of it before loading anything.
std::string checkpoint_to_load(const std::string& dir_or_run_dir);

// The checkpoint a run resumes from: the newest checkpoint of run_dir that
// loads completely (state.json and its step, config.json, every tensor of
// model.safetensors, the optimizer archive restored into AdamW, the generator
// state). Newer ones that fail are skipped with a warning naming each and
// the one used. ConfigError when there is no checkpoint, FormatError when
// none is valid.
LoadedCheckpoint load_resume_checkpoint(const std::string& run_dir);

// Writes an optimizer's state (torch::save's archive) to the file `path`
// atomically (AtomicFile); IoError or c10::Error on failure.
void save_optimizer_state(const std::string& path, const torch::optim::Optimizer& optimizer);

// Restores the optimizer state saved with the checkpoint at `dir`.
void load_optimizer_state(const std::string& dir, torch::optim::Optimizer& optimizer);

// Complete checkpoints of a run directory (step_N folders with state.json,
// model.safetensors and config.json), oldest first by the step in their
// names. FormatError for a step_N name whose N is out of range.
std::vector<std::string> list_checkpoints(const std::string& run_dir);

// The complete checkpoints of run_dir (list_checkpoints) for a run that
// starts in it (resume false) or continues it (true): ConfigError when a
// starting run finds a checkpoint (naming the newest) or a continuing one
// finds none ("nothing to resume").
std::vector<std::string> checkpoints_to_continue(const std::string& run_dir, bool resume);

// The checkpoint directory for `step` in a run directory.
std::string checkpoint_dir(const std::string& run_dir, int64_t step);

}  // namespace metalm
