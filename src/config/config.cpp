#include "metalm/config/config.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "fields.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/threads.hpp"

namespace metalm {

std::string to_string(NormKind v) { return detail::enum_name(v); }
std::string to_string(NormPosition v) { return detail::enum_name(v); }
std::string to_string(PositionKind v) { return detail::enum_name(v); }
std::string to_string(AttentionKind v) { return detail::enum_name(v); }
std::string to_string(MlpKind v) { return detail::enum_name(v); }
std::string to_string(LrSchedule v) { return detail::enum_name(v); }
std::string to_string(Granularity v) { return detail::enum_name(v); }
std::string to_string(Precision v) { return detail::enum_name(v); }
std::string to_string(DeviceKind v) { return detail::enum_name(v); }

namespace {

template <class T>
std::string str(T v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

// Each check names the key, the value and the rule it breaks.
void require(bool ok, const std::string& key, const std::string& value, const std::string& rule) {
  if (!ok) throw ConfigError(key + " = " + value + ": " + rule);
}

void at_least(int64_t v, int64_t lo, const std::string& key) {
  require(v >= lo, key, str(v), "must be at least " + str(lo));
}

// Model sizes are bounded so that no product of two of them (a weight
// matrix, an activation's batch x width) can overflow int64.
void size_in_range(int64_t v, int64_t hi, const std::string& key) {
  require(v >= 1 && v <= hi, key, str(v), "must be from 1 to " + str(hi));
}

void in_unit_interval(double v, const std::string& key) {
  require(v >= 0.0 && v < 1.0, key, str(v), "must be in [0, 1)");
}

// Every float setting must be a finite number, whatever its own range: an inf
// or a NaN set in code or by --set would otherwise run until it surfaced as a
// non-finite loss or a `null` in config.json that no resume can read.
struct FiniteCheck {
  std::string prefix;

  template <class T>
  void operator()(const char* key, const T& value, const char*) const {
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if constexpr (detail::is_section<T>::value) {
      T::fields(value, FiniteCheck{path});
    } else if constexpr (std::is_floating_point_v<T>) {
      require(std::isfinite(value), path, str(value), "must be a finite number");
    }
  }
};

}  // namespace

void resolve(ModelConfig& c) {
  ModelConfig::fields(c, FiniteCheck{"model"});
  constexpr int64_t kMaxDim = int64_t{1} << 24;
  size_in_range(c.vocab_size, int64_t{1} << 32, "model.vocab_size");  // token files hold uint32 ids
  size_in_range(c.context, kMaxDim, "model.context");
  size_in_range(c.d_model, kMaxDim, "model.d_model");
  size_in_range(c.n_layer, int64_t{1} << 16, "model.n_layer");
  size_in_range(c.n_head, kMaxDim, "model.n_head");
  require(c.d_model % c.n_head == 0, "model.d_model", str(c.d_model),
          "must be divisible by model.n_head = " + str(c.n_head));
  if (c.position == PositionKind::Rope)
    require(c.head_dim() % 2 == 0, "model.d_model", str(c.d_model),
            "d_model / n_head must be even for rope (it is " + str(c.head_dim()) + ")");
  if (c.position == PositionKind::Sinusoidal)
    require(c.d_model % 2 == 0, "model.d_model", str(c.d_model), "must be even for sinusoidal positions");
  require(c.d_mlp >= 0 && c.d_mlp <= 4 * kMaxDim, "model.d_mlp", str(c.d_mlp),
          "must be from 0 (4 x d_model) to " + str(4 * kMaxDim));
  if (c.d_mlp == 0) c.d_mlp = 4 * c.d_model;
  in_unit_interval(c.embd_dropout, "model.embd_dropout");
  in_unit_interval(c.attn_dropout, "model.attn_dropout");
  in_unit_interval(c.resid_dropout, "model.resid_dropout");
  require(c.norm_eps > 0, "model.norm_eps", str(c.norm_eps), "must be positive");
  require(c.init_std > 0, "model.init_std", str(c.init_std), "must be positive");
  require(c.rope_base > 1, "model.rope_base", str(c.rope_base), "must be greater than 1");
}

void resolve(RunConfig& c) {
  RunConfig::fields(c, FiniteCheck{});  // the model section again, harmlessly
  resolve(c.model);
  TrainConfig& t = c.train;
  at_least(t.steps, 0, "train.steps");
  at_least(t.batch_size, 1, "train.batch_size");
  at_least(t.seq_len, 0, "train.seq_len");
  if (t.seq_len == 0) t.seq_len = c.model.context;
  require(t.seq_len <= c.model.context, "train.seq_len", str(t.seq_len),
          "must not exceed model.context = " + str(c.model.context));
  at_least(t.grad_accum, 1, "train.grad_accum");
  require(t.lr > 0, "train.lr", str(t.lr), "must be positive");
  require(t.min_lr >= 0 && t.min_lr <= t.lr, "train.min_lr", str(t.min_lr),
          "must be in [0, train.lr = " + str(t.lr) + "]");
  at_least(t.warmup_steps, 0, "train.warmup_steps");
  require(t.weight_decay >= 0, "train.weight_decay", str(t.weight_decay), "must not be negative");
  in_unit_interval(t.beta1, "train.beta1");
  in_unit_interval(t.beta2, "train.beta2");
  require(t.adam_eps > 0, "train.adam_eps", str(t.adam_eps), "must be positive");
  require(t.grad_clip >= 0, "train.grad_clip", str(t.grad_clip), "must not be negative (0 disables)");
  at_least(t.eval_every, 0, "train.eval_every");
  at_least(t.eval_batches, 1, "train.eval_batches");
  at_least(t.log_every, 1, "train.log_every");
  at_least(t.ckpt_every, 0, "train.ckpt_every");
  at_least(t.keep_last, 1, "train.keep_last");
  for (int64_t s : t.save_steps)
    require(s >= 0 && s <= t.steps, "train.save_steps", str(s),
            "each step must be in [0, train.steps = " + str(t.steps) + "]");
  std::sort(t.save_steps.begin(), t.save_steps.end());
  t.save_steps.erase(std::unique(t.save_steps.begin(), t.save_steps.end()), t.save_steps.end());
  require(t.threads >= 0 && t.threads <= kMaxThreads, "train.threads", str(t.threads),
          "must be 0 (all cores) to " + str(kMaxThreads));

  AnalysisConfig& a = c.analysis;
  at_least(a.every, 0, "analysis.every");
  at_least(a.batches, 1, "analysis.batches");
  at_least(a.batch_size, 1, "analysis.batch_size");
  at_least(a.chunk, 1, "analysis.chunk");
  at_least(a.freq_bins, 1, "analysis.freq_bins");
  at_least(a.bootstrap, 1, "analysis.bootstrap");
  at_least(a.permutations, 1, "analysis.permutations");
  require(a.lens == "logit" || !a.tuned_lens_path().empty(), "analysis.lens", a.lens,
          "must be logit or tuned:PATH (a file written by metalm lens-train)");

  // Converted to whole milliseconds and to a count of floats: bounded so that
  // neither rounds to nothing nor overflows.
  const DistConfig& d = c.dist;
  require(d.timeout_s >= 0.001 && d.timeout_s <= 86400, "dist.timeout_s", str(d.timeout_s),
          "must be from 0.001 to 86400 seconds (a day)");
  require(d.bucket_mb >= 0.001 && d.bucket_mb <= 1048576, "dist.bucket_mb", str(d.bucket_mb),
          "must be from 0.001 to 1048576 (1 TiB)");
}

namespace {

struct KeyCollector {
  std::string prefix;
  std::vector<ConfigKey>* out;

  template <class T>
  void operator()(const char* key, const T& value, const char* doc) {
    const std::string path = prefix.empty() ? key : prefix + "." + key;
    if constexpr (detail::is_section<T>::value) {
      KeyCollector inner{path, out};
      T::fields(value, inner);
    } else {
      out->push_back({path, type_name<T>(), nlohmann::json(json_value(value)).dump(), doc});
    }
  }

  template <class T>
  static std::string type_name() {
    if constexpr (std::is_same_v<T, bool>) return "bool";
    else if constexpr (std::is_integral_v<T>) return "int";
    else if constexpr (std::is_floating_point_v<T>) return "float";
    else if constexpr (std::is_same_v<T, std::string>) return "string";
    else if constexpr (std::is_same_v<T, std::vector<int64_t>>) return "list of int";
    else return detail::enum_choices<T>();
  }

  template <class T>
  static nlohmann::json json_value(const T& v) {
    if constexpr (detail::is_enum_table<T>::value) return detail::enum_name(v);
    else return nlohmann::json(v);
  }
};

}  // namespace

std::vector<ConfigKey> config_keys() {
  std::vector<ConfigKey> keys;
  const RunConfig defaults;
  KeyCollector collector{"", &keys};
  RunConfig::fields(defaults, collector);
  return keys;
}

}  // namespace metalm
