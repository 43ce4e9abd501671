// The configuration of an in-context regression run (`metalm icl-train
// --config FILE`): three sections, task, model and train, each key declared
// once in its section's `fields` with its default and meaning. Reading is
// strict like RunConfig's: unknown keys, wrong types and impossible values
// are ConfigErrors naming the key.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

#include "metalm/config/config.hpp"
#include "metalm/icl/model.hpp"
#include "metalm/icl/task.hpp"

namespace metalm::icl {

struct TaskSection {
  TaskOptions task;
  template <class S, class V>
  static void fields(S& s, V& v) {
    v("d_x", s.task.d_x, "input dimension");
    v("d_y", s.task.d_y, "output dimension");
    v("n", s.task.n, "context examples per sequence");
    v("noise", s.task.noise, "standard deviation of the label noise");
    v("kappa", s.task.kappa, "condition number of the input covariance (1: isotropic)");
  }
};

struct ModelSection {
  int64_t layers = 1;
  int64_t heads = 1;
  Attention attention = Attention::Linear;
  double init_std = 0.02;
  template <class S, class V>
  static void fields(S& s, V& v) {
    v("layers", s.layers, "attention layers");
    v("heads", s.heads, "heads per layer");
    v("attention", s.attention, "linear | softmax");
    v("init_std", s.init_std, "standard deviation of the initial W_KQ and W_PV entries");
  }
};

struct TrainSection {
  int64_t steps = 5000;
  int64_t batch_size = 1024;  // tasks per step, fresh every step
  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 100;
  LrSchedule schedule = LrSchedule::Cosine;
  double weight_decay = 0.0;
  double beta1 = 0.9, beta2 = 0.999, adam_eps = 1e-8;
  double grad_clip = 0.0;  // 0: none
  int64_t seed = 0;
  int64_t log_every = 100;
  int64_t eval_every = 500;
  int64_t eval_tasks = 4096;
  int64_t checkpoint_every = 1000;
  int64_t keep_last = 2;
  template <class S, class V>
  static void fields(S& s, V& v) {
    v("steps", s.steps, "AdamW updates");
    v("batch_size", s.batch_size, "tasks per update, drawn fresh for every update");
    v("lr", s.lr, "peak learning rate");
    v("min_lr", s.min_lr, "learning rate at the end of the cosine schedule");
    v("warmup_steps", s.warmup_steps, "linear warmup steps");
    v("schedule", s.schedule, "after warmup: cosine (to min_lr) | constant");
    v("weight_decay", s.weight_decay, "AdamW decoupled weight decay");
    v("beta1", s.beta1, "AdamW beta1");
    v("beta2", s.beta2, "AdamW beta2");
    v("adam_eps", s.adam_eps, "AdamW epsilon");
    v("grad_clip", s.grad_clip, "clip the global gradient norm to this (0: never)");
    v("seed", s.seed, "seed of the initial weights and of every task stream");
    v("log_every", s.log_every, "steps between lines of metrics.jsonl");
    v("eval_every", s.eval_every, "steps between held-out losses");
    v("eval_tasks", s.eval_tasks, "held-out tasks of each evaluation");
    v("checkpoint_every", s.checkpoint_every, "steps between checkpoints (the last step is always saved)");
    v("keep_last", s.keep_last, "newest checkpoints kept");
  }
};

struct IclConfig {
  TaskSection task;
  ModelSection model;
  TrainSection train;

  ModelOptions model_options() const;
  TrainConfig optimizer_config() const;  // the outer loop's keys, for lr_at and AdamW
};

// Strict reader; `origin` names the source in messages. Validates.
IclConfig icl_config_from_json(const nlohmann::json& j, const std::string& origin = "config");
nlohmann::json to_json(const IclConfig& c);
IclConfig load_icl_config(const std::string& path);
void validate(const IclConfig& c);

}  // namespace metalm::icl
