#include "metalm/icl/train.hpp"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/model/weights.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/jsonl_log.hpp"
#include "metalm/train/lr_schedule.hpp"
#include "metalm/train/optimizer.hpp"
#include "metalm/train/retention.hpp"
#include "metalm/train/run_lock.hpp"

namespace fs = std::filesystem;

namespace metalm::icl {
namespace {

constexpr const char* kFormat = "metalm-icl-checkpoint";
constexpr int kVersion = 1;

IclTransformer build_model(const IclConfig& c) {
  torch::manual_seed(static_cast<uint64_t>(c.train.seed));
  return IclTransformer(c.model_options());
}

std::unique_ptr<FlatAdamW> make_icl_optimizer(IclTransformer& model, const TrainConfig& t) {
  auto options = [&] {
    return torch::optim::AdamWOptions(t.lr).betas(std::make_tuple(t.beta1, t.beta2)).eps(t.adam_eps).weight_decay(
        t.weight_decay);
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(model->parameters(), std::make_unique<torch::optim::AdamWOptions>(options()));
  return std::make_unique<FlatAdamW>(std::move(groups), options());
}

void save(const std::string& run_dir, const IclConfig& config, IclTransformer& model, const FlatAdamW& optimizer,
          int64_t step) {
  const std::string dir = checkpoint_dir(run_dir, step);
  AtomicDir out(dir);
  try {
    write_json_file(out / "config.json", to_json(config));
    save_weights(*model, out / "model.safetensors", {{"format", "metalm-icl"}, {"step", std::to_string(step)}});
    save_optimizer_state(out / "optimizer.pt", optimizer);
    // state.json last: a directory without it is never taken for a checkpoint.
    write_json_file(out / "state.json", {{"format", kFormat}, {"version", kVersion}, {"step", step}});
    out.commit();
  } catch (const c10::Error& e) {
    throw IoError("cannot write checkpoint " + dir + ": " + e.what_without_backtrace());
  } catch (const Error& e) {
    throw IoError("cannot write checkpoint " + dir + ": " + e.what());
  }
}

int64_t read_state(const std::string& dir) {
  const std::string path = (fs::path(dir) / "state.json").string();
  const nlohmann::json j = read_json_file(path, JsonError::Format);
  if (!j.is_object() || j.value("format", nlohmann::json()) != kFormat)
    throw FormatError(path + ": not an in-context regression checkpoint (expected \"format\": \"" + kFormat +
                      "\"; write one with metalm icl-train)");
  if (j.value("version", nlohmann::json()) != kVersion)
    throw FormatError(path + ": unsupported version (expected " + std::to_string(kVersion) + ")");
  if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() < 0)
    throw FormatError(path + ": \"step\" must be a non-negative integer");
  return j["step"].get<int64_t>();
}

}  // namespace

double held_out_loss(IclTransformerImpl& model, const IclConfig& config, int64_t tasks) {
  torch::NoGradGuard no_grad;
  const TaskBatch b = sample_tasks(config.task.task, config.train.seed, Stream::Test, 0, tasks);
  return prediction_loss(model.forward(tokens(b, at::kFloat)), b);
}

IclCheckpoint load_icl_checkpoint(const std::string& dir_or_run_dir) {
  const fs::path dir = checkpoint_to_load(dir_or_run_dir);
  IclCheckpoint out;
  out.path = dir.string();
  out.step = read_state(out.path);
  const std::string config_path = (dir / "config.json").string();
  try {
    out.config = icl_config_from_json(read_json_file(config_path, JsonError::Format), config_path);
  } catch (const ConfigError& e) {
    throw FormatError(e.what());  // a checkpoint's own config is data, not the user's input
  }
  out.model = IclTransformer(out.config.model_options());
  load_weights(*out.model, (dir / "model.safetensors").string());
  return out;
}

TrainOutcome train_icl(const IclConfig& config, const std::string& run_dir, bool resume) {
  validate(config);
  RunDirLock lock(run_dir);
  remove_incomplete_checkpoints(run_dir);
  const auto existing = checkpoints_to_continue(run_dir, resume);

  const TrainConfig opt = config.optimizer_config();
  IclTransformer model = build_model(config);
  int64_t step = 0;
  if (resume) {
    IclCheckpoint ckpt = load_icl_checkpoint(existing.back());
    if (to_json(ckpt.config) != to_json(config))
      throw ConfigError("the config differs from the run's own (" + ckpt.path +
                        "/config.json); resume with the run's own config.json");
    model = ckpt.model;
    step = ckpt.step;
  }
  auto optimizer = make_icl_optimizer(model, opt);
  if (resume) load_optimizer_state(checkpoint_dir(run_dir, step), *optimizer);
  write_json_file((fs::path(run_dir) / "config.json").string(), to_json(config));
  JsonlLog metrics((fs::path(run_dir) / "metrics.jsonl").string(), resume ? step : -1);
  if (resume) spdlog::info("resuming {} from step {}", run_dir, step);

  const auto start = std::chrono::steady_clock::now();
  const TrainSection& t = config.train;
  while (step < t.steps) {
    // Batch `step` of the training stream: the same whether or not the run was resumed.
    const TaskBatch b = sample_tasks(config.task.task, t.seed, Stream::Train, step, t.batch_size);
    const double lr = lr_at(opt, step);
    set_learning_rate(*optimizer, lr);
    optimizer->zero_grad();
    const torch::Tensor y_hat = model->forward(tokens(b, at::kFloat));                // [B, d_y]
    const torch::Tensor loss = (y_hat - b.y_q.to(at::kFloat)).pow(2).mean();        // ‖ŷ − y_q‖² / d_y
    loss.backward();
    const double grad_norm = optimizer->grad_norm();
    const double loss_value = loss.item<double>();
    if (!std::isfinite(loss_value) || !std::isfinite(grad_norm))
      throw NumericError("icl-train: non-finite loss or gradient at step " + std::to_string(step) +
                         " (lower train.lr or set train.grad_clip)");
    optimizer->clip(grad_norm, t.grad_clip);
    optimizer->step();
    ++step;
    const bool last = step == t.steps;
    if (step % t.log_every == 0 || step % t.eval_every == 0 || last) {
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      nlohmann::json line{{"step", step}, {"loss", loss_value}, {"lr", lr}, {"grad_norm", grad_norm}, {"elapsed_s", elapsed}};
      if (step % t.eval_every == 0 || last) line["eval_loss"] = held_out_loss(*model, config, t.eval_tasks);
      metrics.write(line);
      spdlog::info("step {:>7}/{}: loss {:.5f}{}", step, t.steps, loss_value,
                   line.contains("eval_loss") ? fmt::format(", held-out {:.5f}", line["eval_loss"].get<double>()) : "");
    }
    if (step % t.checkpoint_every == 0 || last) {
      save(run_dir, config, model, *optimizer, step);
      RetentionPolicy policy;
      policy.keep_last = t.keep_last;
      policy.newest = step;
      prune_checkpoints(run_dir, policy);
    }
  }
  TrainOutcome outcome;
  outcome.steps = step;
  outcome.eval_loss = held_out_loss(*model, config, t.eval_tasks);
  outcome.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return outcome;
}

}  // namespace metalm::icl
