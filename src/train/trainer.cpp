#include "metalm/train/trainer.hpp"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <string_view>

#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/lens.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/hash.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/parameter_count.hpp"
#include "metalm/model/runtime.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/evaluate.hpp"
#include "metalm/train/jsonl_log.hpp"
#include "metalm/train/lr_schedule.hpp"
#include "metalm/train/optimizer.hpp"
#include "metalm/train/retention.hpp"
#include "metalm/train/run_lock.hpp"
#include "metalm/train/rng_state.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string format_duration(double s) {
  const auto total = static_cast<int64_t>(std::max(0.0, s) + 0.5);
  const int64_t h = total / 3600, m = (total / 60) % 60, sec = total % 60;
  if (h > 0) return fmt::format("{}h{:02d}m", h, m);
  if (m > 0) return fmt::format("{}m{:02d}s", m, sec);
  return fmt::format("{}s", sec);
}

nlohmann::json finite_or_null(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); }

bool contains(const std::vector<int64_t>& v, int64_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// Dropout seed of one rank at one step in a multi-rank run: a pure function
// of (seed, rank, step), so ranks draw different masks and a resumed run
// draws the same ones as an uninterrupted run.
uint64_t rank_step_seed(int64_t seed, int rank, int64_t step) { return mix(static_cast<uint64_t>(seed), rank, step); }

// The validation loss metrics.jsonl records at `step` (NaN if none): what a
// finished run reports when it is resumed again.
double final_val_loss(const std::string& metrics, int64_t step) {
  double loss = std::numeric_limits<double>::quiet_NaN();
  std::string text;
  try {
    text = read_file(metrics);
  } catch (const Error&) {
    return loss;
  }
  std::string_view rest = text;
  while (!rest.empty()) {
    const std::size_t end = rest.find('\n');
    nlohmann::json j;
    try {
      j = parse_json(std::string(rest.substr(0, end)), metrics, JsonError::Format);
    } catch (const FormatError&) {
    }
    rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
    if (j.is_object() && j.value("event", nlohmann::json()) == "eval" && j.value("step", nlohmann::json()) == step &&
        j.contains("val_loss") && j["val_loss"].is_number())
      loss = j["val_loss"].get<double>();
  }
  return loss;
}

// config.json: the resolved config, and what its arithmetic ran on (the
// BLAS kernel and ATen capability, and who chose them), a record that
// reading the config back skips.
nlohmann::json run_config_record(const RunConfig& config) {
  nlohmann::json j = to_json(config);
  j[kRuntimeRecordKey] = to_json(runtime_kernels());
  return j;
}

}  // namespace

struct Trainer::Logs {
  JsonlLog metrics;
  std::unique_ptr<JsonlLog> analysis;
};

Trainer::Trainer(RunConfig config, TrainerOptions options) : config_(std::move(config)), options_(std::move(options)) {
  resolve(config_);
  if (options_.run_dir.empty()) throw ConfigError("no run directory given");
  const int threads = start_runtime();
  // Every input is read and checked before the run directory is touched, so
  // a run that cannot start leaves nothing behind.
  read_inputs();
  std::optional<LoadedCheckpoint> resumed = claim_run_dir();
  build_model(resumed ? &*resumed : nullptr);
  if (complete_) {
    // Nothing to train: the run directory is left exactly as it is.
    last_val_loss_ = final_val_loss((fs::path(options_.run_dir) / "metrics.jsonl").string(), step_);
    return;
  }
  open_logs();
  const TrainConfig& tc = config_.train;
  spdlog::info("run {}: {} parameters, {} steps of {} tokens, {} {} threads, {}, data {}", config_.name,
               count_parameters(*model_), tc.steps, tc.tokens_per_step(dist_->world_size()),
               device_label(device_), threads, to_string(tc.precision), config_.data.dir);
  spdlog::info("global batch: {} ranks x {} sequences x {} accumulation = {} sequences of {} tokens",
               dist_->world_size(), tc.batch_size, tc.grad_accum,
               dist_->world_size() * tc.batch_size * tc.grad_accum, tc.seq_len);
}

int Trainer::start_runtime() {
  const TrainConfig& tc = config_.train;
  const int threads = set_threads(options_.threads > 0 ? options_.threads : static_cast<int>(tc.threads));
  device_ = resolve_device(tc.device);
  // What ran is what the run directory's config.json records: auto becomes
  // the precision measured fastest for this model's matmuls on this device.
  const bool auto_precision = tc.precision == Precision::Auto;
  if (auto_precision)
    config_.train.precision = resolve_precision(tc.precision, device_, config_.model, tc.batch_size * tc.seq_len);
  log_runtime_kernels_once();

  // Rendezvous first: a broken launch fails before any file is touched.
  dist_ = std::make_unique<DistributedContext>(options_.launch, config_.dist, device_);
  if (auto_precision) {
    // Every rank runs rank 0's choice: measurements differ from rank to rank.
    const at::Tensor bf16 = at::full({1}, tc.precision == Precision::Bf16 ? 1.0f : 0.0f, at::device(device_));
    dist_->broadcast({bf16});
    config_.train.precision = bf16.item<float>() > 0.5f ? Precision::Bf16 : Precision::Fp32;
    spdlog::info("train.precision auto -> {}", to_string(tc.precision));
  }
  dist_->check_same("the resolved config", to_json(config_).dump());
  return threads;
}

void Trainer::read_inputs() {
  // The training windows come from a counter-based sampler (its state is one
  // integer), the evaluation windows are fixed for the whole run.
  const TrainConfig& tc = config_.train;
  const fs::path data_dir(config_.data.dir);
  meta_ = read_dataset_meta(data_dir.string());
  if (meta_.vocab_size > config_.model.vocab_size)
    throw ConfigError("model.vocab_size = " + std::to_string(config_.model.vocab_size) + " is smaller than the " +
                      "dataset's vocabulary (" + std::to_string(meta_.vocab_size) + " in " + data_dir.string() + ")");
  train_data_ = std::make_unique<TokenDataset>((data_dir / "train.bin").string());
  val_data_ = std::make_unique<TokenDataset>((data_dir / "val.bin").string());
  // Ids index meta.json's counts, and meta.json's vocabulary fits the model's.
  for (const TokenDataset* d : {train_data_.get(), val_data_.get()}) d->check_vocab(meta_.vocab_size, "meta.json");
  sampler_ = std::make_unique<ShardedWindowSampler>(*train_data_, tc.batch_size, tc.seq_len,
                                                    static_cast<uint64_t>(tc.seed), dist_->rank(),
                                                    dist_->world_size());
  // Evaluation batches hold the global micro-batch (world x batch_size
  // windows), so a run's validation windows do not depend on how it is split.
  eval_batches_ = fixed_eval_batches(*val_data_, tc.eval_batches, tc.batch_size * dist_->world_size(), tc.seq_len);
  if (config_.analysis.every > 0) {
    analysis_batches_ = fixed_eval_batches(*val_data_, config_.analysis.batches, config_.analysis.batch_size,
                                           tc.seq_len);
    // The lens is read once, now: a missing or mismatched file fails before
    // the run directory is written.
    lens_ = make_lens(config_.analysis, config_.model);
  }
}

std::optional<LoadedCheckpoint> Trainer::claim_run_dir() {
  // One process per run directory, for the whole run; rank 0 owns it. The
  // lock refuses a directory that is not a run of metalm's (run_lock.hpp).
  if (dist_->is_main()) lock_ = std::make_unique<RunDirLock>(options_.run_dir);

  checkpoints_to_continue(options_.run_dir, options_.resume);
  if (!options_.resume) return std::nullopt;

  // The newest checkpoint that loads completely; newer broken ones are
  // skipped with a warning (checkpoint.hpp).
  LoadedCheckpoint ckpt = load_resume_checkpoint(options_.run_dir);
  if (to_json(ckpt.config.model) != to_json(config_.model))
    throw ConfigError("the model config differs from the checkpoint's (" + ckpt.path +
                      "/config.json); resume with the run's own config.json");
  if (!ckpt.has_optimizer) throw FormatError(ckpt.path + ": no optimizer state, cannot resume training");
  // Each rank chose the newest valid checkpoint it sees; they must agree.
  dist_->check_same("the checkpoint resumed from", fs::path(ckpt.path).filename().string());
  return ckpt;
}

void Trainer::build_model(const LoadedCheckpoint* resumed) {
  // A fresh run draws its initial weights from the seeded global generator,
  // which then drives dropout; a resumed run takes weights and generator
  // state from the checkpoint.
  const TrainConfig& tc = config_.train;
  if (resumed) {
    model_ = resumed->model;
  } else {
    torch::manual_seed(static_cast<uint64_t>(tc.seed));
    model_ = CausalTransformer(config_.model);
  }
  model_->to(device_);
  model_->train();
  params_ = model_->parameters();
  optimizer_ = make_optimizer(model_, tc);
  if (resumed) restore(*resumed);
  // Identical weights on every rank, whatever each loaded or initialised;
  // this also keeps rank 0 from checkpointing before every rank has loaded.
  dist_->broadcast(params_);
}

void Trainer::restore(const LoadedCheckpoint& resumed) {
  const CheckpointState& state = resumed.state;
  load_optimizer_state(resumed.path, *optimizer_);
  step_ = state.step;
  best_val_loss_ = state.best_val_loss;
  best_step_ = state.extra.value("best_step", int64_t{-1});
  elapsed_before_ = state.extra.value("elapsed_s", 0.0);
  sampler_->restore(state.sampler);
  // load_checkpoint checked the sampler's counter against the step; a run
  // that changes grad_accum counts from here on.
  if (state.extra.contains("sampler_origin")) sampler_origin_ = state.extra["sampler_origin"];
  if (resumed.config.train.grad_accum != config_.train.grad_accum)
    sampler_origin_ = {{"step", step_}, {"sampler_step", state.sampler["step"]}};
  restore_rng_state(state.rng);
  if (dist_->is_main())
    for (const auto& dir : remove_incomplete_checkpoints(options_.run_dir))
      spdlog::warn("removed the incomplete checkpoint {}", dir);
  spdlog::info("resuming from {} (step {})", resumed.path, step_);
  complete_ = step_ >= config_.train.steps;
}

void Trainer::open_logs() {
  // Rank 0 alone writes the run directory (the ranks' states are identical).
  if (!dist_->is_main()) return;
  const std::string metrics = (fs::path(options_.run_dir) / "metrics.jsonl").string();
  const std::string analysis = (fs::path(options_.run_dir) / "analysis.jsonl").string();
  const JsonlRecordTest metrics_record = [](const nlohmann::json& j) {
    const nlohmann::json event = j.value("event", nlohmann::json());
    return event == "train" || event == "eval";
  };
  const JsonlRecordTest analysis_record = [](const nlohmann::json& j) {
    return j.value("format", nlohmann::json()) == kAnalysisFormat;
  };
  const int64_t keep = options_.resume ? step_ : -1;
  // Both logs are checked before either is rewritten or config.json
  // replaced: a resume that stops at a line it did not write changes nothing.
  if (options_.resume)
    for (const auto& [path, is_record] : {std::pair{metrics, metrics_record}, std::pair{analysis, analysis_record}})
      if (std::error_code ec; fs::exists(fs::symlink_status(path, ec))) jsonl_lines_to_keep(read_file(path), path, keep, is_record);
  write_json_file((fs::path(options_.run_dir) / "config.json").string(), run_config_record(config_));
  logs_ = std::make_unique<Logs>(Logs{JsonlLog(metrics, keep, metrics_record), {}});
  if (config_.analysis.every > 0) logs_->analysis = std::make_unique<JsonlLog>(analysis, keep, analysis_record);
}

Trainer::~Trainer() = default;

Trainer::StepResult Trainer::train_step() {
  const TrainConfig& tc = config_.train;
  const double lr = lr_at(tc, step_);
  set_learning_rate(*optimizer_, lr);
  optimizer_->zero_grad();
  if (dist_->distributed()) torch::manual_seed(rank_step_seed(tc.seed, dist_->rank(), step_));
  double loss_sum = 0;
  for (int64_t micro = 0; micro < tc.grad_accum; ++micro) {
    const Batch batch = sampler_->next();
    // [B, T, V], fp32 whatever the matmuls ran in, so the loss is reduced in fp32.
    const at::Tensor logits = forward_logits(model_, batch.inputs, tc.precision);
    const auto loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}),
                                             batch.targets.to(device_).reshape({-1}));
    const double value = loss.item<double>();
    if (!std::isfinite(value))
      throw NumericError(fmt::format("non-finite training loss ({}) at step {}; stopped without saving the "
                                     "diverged state; last good checkpoint: {}",
                                     value, step_ + 1, last_good_checkpoint()));
    // Mean over micro-batches, so the gradient does not depend on grad_accum.
    (loss / static_cast<double>(tc.grad_accum)).backward();
    loss_sum += value;
  }
  // One communication per optimizer step, however many micro-batches: the
  // ranks' mean gradients average to the gradient of the global batch.
  dist_->allreduce_mean_flat(optimizer_->flat_grads());
  if (dist_->distributed()) {
    std::vector<double> total{loss_sum};
    dist_->allreduce_sum(total);
    loss_sum = total[0] / static_cast<double>(dist_->world_size());
  }
  const double norm = optimizer_->grad_norm();
  if (!std::isfinite(norm))
    throw NumericError(fmt::format("non-finite gradient norm ({}) at step {}; stopped without saving the "
                                   "diverged state; last good checkpoint: {}",
                                   norm, step_ + 1, last_good_checkpoint()));
  optimizer_->clip(norm, tc.grad_clip);
  optimizer_->step();
  ++step_;
  return {loss_sum / static_cast<double>(tc.grad_accum), norm, lr};
}

TrainSummary Trainer::run() {
  const TrainConfig& tc = config_.train;
  const int64_t end = options_.stop_at > 0 ? std::min(options_.stop_at, tc.steps) : tc.steps;
  const int64_t tokens_per_step = tc.tokens_per_step(dist_->world_size());
  TrainSummary summary;
  const double allreduce_before = dist_->allreduce_seconds_total();
  summary.start_step = step_;
  start_ = Clock::now();
  if (complete_) {
    summary.already_complete = true;
    summary.end_step = step_;
    summary.best_val_loss = best_val_loss_;
    summary.best_step = best_step_;
    summary.last_val_loss = last_val_loss_;
    return summary;
  }

  // A resumed run already recorded everything of its checkpoint's step.
  if (step_ == 0 && !options_.resume) at_boundary(0, end == 0);

  double train_seconds = 0, interval_seconds = 0;
  int64_t interval_steps = 0;
  while (step_ < end) {
    const auto t0 = Clock::now();
    const StepResult r = train_step();
    const double dt = seconds_since(t0);
    train_seconds += dt;
    interval_seconds += dt;
    ++interval_steps;
    summary.losses.push_back(r.loss);
    summary.step_seconds.push_back(dt);

    if (step_ % std::max<int64_t>(1, tc.log_every) == 0 || step_ == end) {
      const double tps = static_cast<double>(interval_steps * tokens_per_step) / std::max(interval_seconds, 1e-9);
      const double elapsed = this->elapsed();
      if (logs_) {
        nlohmann::json line = {{"event", "train"},
                               {"step", step_},
                               {"loss", r.loss},
                               {"lr", r.lr},
                               {"grad_norm", r.grad_norm},
                               {"tokens", step_ * tokens_per_step},
                               {"tokens_per_s", tps},
                               {"elapsed_s", elapsed}};
        if (dist_->distributed()) line["allreduce_ms"] = 1000.0 * dist_->allreduce_seconds_last();
        logs_->metrics.write(line);
      }
      const double eta = static_cast<double>(end - step_) * train_seconds /
                         static_cast<double>(step_ - summary.start_step);
      spdlog::info("step {}/{} | loss {:.4f} | lr {:.2e} | grad {:.3f} | {:.0f} tok/s | ETA {}", step_, tc.steps,
                   r.loss, r.lr, r.grad_norm, tps, format_duration(eta));
      interval_seconds = 0;
      interval_steps = 0;
    }
    at_boundary(step_, step_ == end);
  }

  summary.end_step = step_;
  summary.best_val_loss = best_val_loss_;
  summary.best_step = best_step_;
  summary.last_val_loss = last_val_loss_;
  summary.tokens_per_s = train_seconds > 0
                             ? static_cast<double>((step_ - summary.start_step) * tokens_per_step) / train_seconds
                             : 0.0;
  if (step_ > summary.start_step)
    summary.allreduce_s_per_step = (dist_->allreduce_seconds_total() - allreduce_before) /
                                   static_cast<double>(step_ - summary.start_step);
  return summary;
}

void Trainer::at_boundary(int64_t step, bool last) {
  const TrainConfig& tc = config_.train;
  improved_ = false;
  const bool final_step = step == tc.steps;
  if (final_step || (tc.eval_every > 0 && step % tc.eval_every == 0)) evaluate(step);
  if (config_.analysis.every > 0 && (step % config_.analysis.every == 0 || final_step)) analyse(step);
  const bool periodic = tc.ckpt_every > 0 && step > 0 && step % tc.ckpt_every == 0;
  if (last || periodic || contains(tc.save_steps, step) || (improved_ && step > 0)) checkpoint(step);
}

double Trainer::evaluate(int64_t step) {
  const TrainConfig& tc = config_.train;
  const auto t0 = Clock::now();
  // Each rank scores its share of the fixed batches; summed losses and
  // token counts give exactly the single-process mean.
  EvalResult r;
  if (dist_->distributed()) {
    std::vector<Batch> mine;
    for (int64_t i : rank_share(static_cast<int64_t>(eval_batches_.size()), dist_->rank(), dist_->world_size()))
      mine.push_back(eval_batches_[i]);
    std::vector<double> totals{0.0, 0.0};  // summed CE, scored tokens
    if (!mine.empty()) {
      const EvalResult part = evaluate_batches(model_, mine, tc.precision);
      totals = {part.loss * static_cast<double>(part.tokens), static_cast<double>(part.tokens)};
    }
    dist_->allreduce_sum(totals);
    r.tokens = static_cast<int64_t>(totals[1]);
    r.loss = totals[0] / totals[1];
  } else {
    r = evaluate_batches(model_, eval_batches_, tc.precision);
  }
  if (!std::isfinite(r.loss))
    throw NumericError(fmt::format("non-finite validation loss ({}) at step {}; last good checkpoint: {}", r.loss,
                                   step, last_good_checkpoint()));
  const double bpb = r.bits_per_byte(meta_.bytes_per_token(meta_.val));
  if (logs_) logs_->metrics.write({{"event", "eval"},
                        {"step", step},
                        {"val_loss", r.loss},
                        {"val_ppl", r.perplexity()},
                        {"val_bpb", finite_or_null(bpb)}});
  last_val_loss_ = r.loss;
  if (r.loss < best_val_loss_) {
    best_val_loss_ = r.loss;
    improved_ = true;
  }
  spdlog::info("eval step {} | val loss {:.4f} | ppl {:.2f} | {:.3f} bits/byte | {:.1f}s", step, r.loss,
               r.perplexity(), bpb, seconds_since(t0));
  return r.loss;
}

void Trainer::analyse(int64_t step) {
  // Every rank takes part (the default analysis splits the batches over
  // the ranks); rank 0 writes the result.
  if (!options_.analysis) {
    spdlog::warn("analysis.every = {} but no analysis is available; skipped", config_.analysis.every);
    return;
  }
  const auto t0 = Clock::now();
  // The analysis must not shift the dropout stream of training.
  nlohmann::json result =
      preserving_rng_state([&] { return options_.analysis(model_, analysis_batches_, config_, meta_, *dist_, *lens_); });
  if (!dist_->is_main()) return;
  nlohmann::json line = {{"step", step}};
  line.update(result);
  line["step"] = step;
  logs_->analysis->write(line);
  spdlog::info("analysis step {} | {:.1f}s", step, seconds_since(t0));
}

void Trainer::checkpoint(int64_t step) {
  CheckpointState state;
  state.step = step;
  state.tokenizer = meta_.tokenizer;
  if (improved_) best_step_ = step;
  if (!dist_->is_main()) return;
  state.best_val_loss = best_val_loss_;
  state.rng = capture_rng_state();
  state.sampler = sampler_->state();
  state.extra = {{"elapsed_s", elapsed()}, {"best_step", best_step_}, {"world_size", dist_->world_size()},
                 {"tokens", step * config_.train.tokens_per_step(dist_->world_size())}};
  if (!sampler_origin_.is_null()) state.extra["sampler_origin"] = sampler_origin_;
  const std::string dir = checkpoint_dir(options_.run_dir, step);
  save_checkpoint(dir, config_, model_, optimizer_.get(), state);
  if (improved_)
    write_json_file((fs::path(options_.run_dir) / "best.json").string(),
                    {{"step", step},
                     {"val_loss", best_val_loss_},
                     {"checkpoint", fs::relative(dir, options_.run_dir).string()}});
  // save_checkpoint read the new one back before it took its name, so the
  // older ones may go; anything named for a later step is left alone.
  RetentionPolicy policy{config_.train.keep_last, config_.train.save_steps, best_step_, step};
  for (const auto& removed : prune_checkpoints(options_.run_dir, policy)) spdlog::debug("removed {}", removed);
  spdlog::info("checkpoint {}", dir);
}

double Trainer::elapsed() const { return elapsed_before_ + seconds_since(start_); }

std::string Trainer::last_good_checkpoint() const {
  const auto all = list_checkpoints(options_.run_dir);
  return all.empty() ? std::string("none") : all.back();
}

}  // namespace metalm
