// Training a model on in-context regression, in a run directory laid out
// like the language-model trainer's (docs/design.md section 7):
//
//   RUN/config.json                      the IclConfig
//   RUN/metrics.jsonl                    {"step", "loss", "lr", "grad_norm", "elapsed_s"[, "eval_loss"]}
//   RUN/checkpoints/step_<NNNNNNNN>/     config.json, model.safetensors, optimizer.pt,
//                                        state.json {"format": "metalm-icl-checkpoint", "version": 1, "step"}
//
// It reuses the train concern's run lock, JSON Lines log, checkpoint naming,
// retention and atomic writes. Every batch is a pure function of (seed, step),
// so a resumed run is bit for bit the uninterrupted one.
#pragma once

#include <cstdint>
#include <string>

#include "metalm/icl/icl_config.hpp"
#include "metalm/icl/model.hpp"

namespace metalm::icl {

struct TrainOutcome {
  int64_t steps = 0;           // the model's step at the end
  double eval_loss = 0;        // held-out loss of the final model
  double elapsed_s = 0;        // training time of this process
};

// Trains from scratch (resume = false: RUN must hold no checkpoint) or from
// the newest checkpoint (resume = true: `config` must equal the run's own).
TrainOutcome train_icl(const IclConfig& config, const std::string& run_dir, bool resume);

struct IclCheckpoint {
  std::string path;  // the checkpoint directory loaded
  IclConfig config;
  IclTransformer model{nullptr};
  int64_t step = 0;
};

// A checkpoint directory, or the newest checkpoint of a run directory.
// IoError when there is none, FormatError when it is not an ICL checkpoint.
IclCheckpoint load_icl_checkpoint(const std::string& dir_or_run_dir);

// The held-out loss of a model on `tasks` test tasks (the Test stream).
double held_out_loss(IclTransformerImpl& model, const IclConfig& config, int64_t tasks);

}  // namespace metalm::icl
