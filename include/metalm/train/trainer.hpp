// The outer loop: trains a CausalTransformer on a prepared dataset into a run
// directory, evaluating, analysing, logging and checkpointing as it goes.
//
// Step numbering: "step s" is the model after s optimizer updates (step 0 is
// the untrained model). At every step boundary, in this order: the train
// metrics line (every log_every steps), the evaluation (step 0, every
// eval_every steps and the last step), the analysis (every analysis.every
// steps), then the checkpoint (every ckpt_every steps, the last step, the
// save_steps, and whenever the validation loss improves on the best so far).
// Everything recorded for step s precedes the checkpoint of step s, so a run
// resumed from it drops the metric lines after s and rewrites them.
//
// RUN_DIR/
//   config.json            the resolved config
//   metrics.jsonl          {"event":"train",...} and {"event":"eval",...} lines
//   analysis.jsonl         one analysis per line, with "step" (analysis.every > 0)
//   best.json              {"step","val_loss","checkpoint"} of the best validation loss
//   checkpoints/step_N/    see checkpoint.hpp
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"
#include "metalm/data/dataset_meta.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/train/distributed.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/sharded_sampler.hpp"

namespace metalm {

class FlatAdamW;

class RunDirLock;

class Lens;

// Analyses a model on fixed validation batches and returns one JSON object
// (the trainer adds "step" and appends it to analysis.jsonl). Every rank of
// a data-parallel run calls it with the same batches, in step; it may share
// the work through `dist` (collectives in the same order on every rank).
// Only rank 0's result is written. `lens` is the lens of analysis.lens,
// built once by the trainer (make_lens) before the run directory is touched.
using AnalysisFn =
    std::function<nlohmann::json(CausalTransformer& model, const std::vector<Batch>& batches,
                                 const RunConfig& config, const DatasetMeta& meta, DistributedContext& dist,
                                 const Lens& lens)>;

// The library's inner-optimization analysis (analysis/), as the trainer's
// default AnalysisFn: the ranks analyse disjoint batches and exchange the
// per-position values, so the result equals a single-process analysis.
AnalysisFn default_analysis();

struct TrainerOptions {
  std::string run_dir;     // required
  bool resume = false;     // continue from the newest checkpoint of run_dir
  int threads = 0;         // > 0: overrides train.threads
  int64_t stop_at = 0;     // > 0: stop after this step, checkpointed, as if interrupted
  AnalysisFn analysis = default_analysis();
  // This process's place in a data-parallel world (distributed.hpp); the
  // default is a world of one. How the ranks communicate is the config's
  // dist section. Every rank trains on its own rows of each global
  // micro-batch; rank 0 alone writes the run directory.
  DistLaunch launch;
};

struct TrainSummary {
  int64_t start_step = 0, end_step = 0;
  // --resume of a run whose checkpoint is at (or past) train.steps: nothing
  // was trained or written; the figures are the run's final ones.
  bool already_complete = false;
  int64_t best_step = -1;  // step of best_val_loss's checkpoint (-1: none)
  std::vector<double> losses;  // training loss of each update of this call, in order
  std::vector<double> step_seconds;  // wall time of each of those updates
  double last_val_loss = std::numeric_limits<double>::quiet_NaN();
  double best_val_loss = std::numeric_limits<double>::infinity();
  double tokens_per_s = 0;     // over the updates of this call, all ranks together
  double allreduce_s_per_step = 0;  // mean gradient allreduce time (0 in a world of one)
};

class Trainer {
 public:
  // Reads and checks every input (data, tuned lens), then prepares the run
  // directory (refusing one that is not a metalm run, or one with
  // checkpoints unless resume), the model and the optimizer; on resume
  // restores the newest checkpoint. Throws ConfigError/IoError/FormatError
  // and then leaves no new file behind.
  Trainer(RunConfig config, TrainerOptions options);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains to train.steps (or stop_at). Throws NumericError on a non-finite
  // loss or gradient, without checkpointing the diverged state.
  TrainSummary run();

  int64_t step() const { return step_; }
  CausalTransformer& model() { return model_; }
  const RunConfig& config() const { return config_; }

 private:
  struct StepResult {
    double loss, grad_norm, lr;
  };
  // The constructor's steps, in order. start_runtime: threads, device,
  // precision (auto measured and agreed by the ranks), the rendezvous;
  // returns the thread count. read_inputs: the data, the samplers, the
  // evaluation and analysis batches, the lens. claim_run_dir: the run
  // directory's lock and checkpoints; on resume the checkpoint to resume
  // from, checked against the config. build_model: the model and optimizer,
  // fresh or restored (restore: optimizer, step, sampler, RNG, best so far),
  // the same on every rank. open_logs: config.json and the logs, rank 0.
  int start_runtime();
  void read_inputs();
  std::optional<LoadedCheckpoint> claim_run_dir();
  void build_model(const LoadedCheckpoint* resumed);
  void restore(const LoadedCheckpoint& resumed);
  void open_logs();

  StepResult train_step();
  void at_boundary(int64_t step, bool last);
  double evaluate(int64_t step);
  void analyse(int64_t step);
  void checkpoint(int64_t step);
  std::string last_good_checkpoint() const;

  RunConfig config_;
  TrainerOptions options_;
  std::unique_ptr<RunDirLock> lock_;  // RUN_DIR/.lock, rank 0 (run_lock.hpp)
  DatasetMeta meta_;
  std::unique_ptr<TokenDataset> train_data_, val_data_;
  std::unique_ptr<DistributedContext> dist_;
  std::unique_ptr<ShardedWindowSampler> sampler_;
  std::vector<Batch> eval_batches_, analysis_batches_;
  std::shared_ptr<const Lens> lens_;  // of analysis.lens (analysis.every > 0)
  c10::Device device_{c10::kCPU};  // train.device, resolved
  CausalTransformer model_{nullptr};
  std::vector<at::Tensor> params_;
  std::unique_ptr<FlatAdamW> optimizer_;
  struct Logs;
  std::unique_ptr<Logs> logs_;

  int64_t step_ = 0;
  double best_val_loss_ = std::numeric_limits<double>::infinity();
  int64_t best_step_ = -1;
  double last_val_loss_ = std::numeric_limits<double>::quiet_NaN();
  bool improved_ = false;  // the evaluation of the current boundary set a new best
  bool complete_ = false;  // resumed at or past train.steps: run() has nothing to do
  // {"step", "sampler_step"} since which every update drew grad_accum
  // micro-batches (state.json's extra.sampler_origin); null: since step 0.
  nlohmann::json sampler_origin_;
  double elapsed_before_ = 0;  // seconds trained before this process (resume)
  std::chrono::steady_clock::time_point start_;  // of run()
  double elapsed() const;  // seconds of training, across resumes
};

}  // namespace metalm
