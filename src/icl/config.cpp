#include "metalm/icl/icl_config.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"

namespace metalm::icl {
namespace {

using json = nlohmann::json;

[[noreturn]] void wrong(const std::string& path, const std::string& expected, const json& j) {
  throw ConfigError(path + ": expected " + expected + ", found " + json_excerpt(j));
}

void read_value(const json& j, int64_t& out, const std::string& path) {
  if (j.is_number_integer()) {
    out = j.get<int64_t>();
  } else if (j.is_number_float() && std::isfinite(j.get<double>()) && j.get<double>() == std::floor(j.get<double>()) &&
             std::fabs(j.get<double>()) < 9e15) {
    out = static_cast<int64_t>(j.get<double>());  // 1e3 is a fine way to write 1000
  } else {
    wrong(path, "int", j);
  }
}
void read_value(const json& j, double& out, const std::string& path) {
  if (!j.is_number()) wrong(path, "float", j);
  out = j.get<double>();
}
void read_value(const json& j, Attention& out, const std::string& path) {
  if (j == "linear") out = Attention::Linear;
  else if (j == "softmax") out = Attention::Softmax;
  else wrong(path, "one of linear | softmax", j);
}
void read_value(const json& j, LrSchedule& out, const std::string& path) {
  if (j == "cosine") out = LrSchedule::Cosine;
  else if (j == "constant") out = LrSchedule::Constant;
  else wrong(path, "one of cosine | constant", j);
}

json write_value(int64_t v) { return v; }
json write_value(double v) { return v; }
json write_value(Attention a) { return attention_name(a); }
json write_value(LrSchedule s) { return s == LrSchedule::Cosine ? "cosine" : "constant"; }

struct Reader {
  const json& object;
  std::string prefix;
  std::vector<std::string> known;
  template <class T>
  void operator()(const char* key, T& field, const char*) {
    known.emplace_back(key);
    if (const auto it = object.find(key); it != object.end()) read_value(*it, field, prefix + "." + key);
  }
};

struct Writer {
  json& out;
  template <class T>
  void operator()(const char* key, const T& field, const char*) {
    out[key] = write_value(field);
  }
};

template <class S>
void read_section(const json& root, const char* name, S& section, const std::string& origin) {
  const auto it = root.find(name);
  if (it == root.end()) return;
  if (!it->is_object()) wrong(origin + ": " + name, "object", *it);
  Reader reader{*it, name, {}};
  S::fields(section, reader);
  for (const auto& item : it->items())
    if (std::find(reader.known.begin(), reader.known.end(), item.key()) == reader.known.end())
      throw ConfigError(origin + ": unknown key \"" + std::string(name) + "." + excerpt(item.key()) + "\"");
}

template <class S>
json write_section(const S& section) {
  json out = json::object();
  Writer writer{out};
  S::fields(section, writer);
  return out;
}

void require(bool ok, const std::string& message) {
  if (!ok) throw ConfigError(message);
}

}  // namespace

ModelOptions IclConfig::model_options() const {
  ModelOptions o;
  o.d_x = task.task.d_x;
  o.d_y = task.task.d_y;
  o.layers = model.layers;
  o.heads = model.heads;
  o.attention = model.attention;
  o.init_std = model.init_std;
  return o;
}

TrainConfig IclConfig::optimizer_config() const {
  TrainConfig t;
  t.steps = train.steps;
  t.lr = train.lr;
  t.min_lr = train.min_lr;
  t.warmup_steps = train.warmup_steps;
  t.schedule = train.schedule;
  t.weight_decay = train.weight_decay;
  t.beta1 = train.beta1;
  t.beta2 = train.beta2;
  t.adam_eps = train.adam_eps;
  t.grad_clip = train.grad_clip;
  t.seed = train.seed;
  return t;
}

void validate(const IclConfig& c) {
  validate(c.task.task);
  const ModelSection& m = c.model;
  require(m.layers >= 1 && m.layers <= 64, "model.layers: must be from 1 to 64");
  require(m.heads >= 1 && m.heads <= 64, "model.heads: must be from 1 to 64");
  require(std::isfinite(m.init_std) && m.init_std > 0 && m.init_std <= 10, "model.init_std: must be in (0, 10]");
  const TrainSection& t = c.train;
  require(t.steps >= 1 && t.steps <= (int64_t{1} << 30), "train.steps: must be from 1 to 2^30");
  require(t.batch_size >= 1 && t.batch_size <= (1 << 20), "train.batch_size: must be from 1 to 1048576");
  const double tokens = static_cast<double>(std::max(t.batch_size, t.eval_tasks)) * static_cast<double>(c.task.task.n + 1) *
                        static_cast<double>(c.task.task.width());
  require(tokens <= double(int64_t{1} << 31), "train.batch_size, train.eval_tasks: a batch of tasks holds at most 2^31 token entries");
  require(std::isfinite(t.lr) && t.lr > 0, "train.lr: must be a positive number");
  require(std::isfinite(t.min_lr) && t.min_lr >= 0 && t.min_lr <= t.lr, "train.min_lr: must be from 0 to train.lr");
  require(t.warmup_steps >= 0, "train.warmup_steps: must be >= 0");
  require(std::isfinite(t.weight_decay) && t.weight_decay >= 0, "train.weight_decay: must be >= 0");
  require(t.beta1 >= 0 && t.beta1 < 1, "train.beta1: must be in [0, 1)");
  require(t.beta2 >= 0 && t.beta2 < 1, "train.beta2: must be in [0, 1)");
  require(std::isfinite(t.adam_eps) && t.adam_eps > 0, "train.adam_eps: must be positive");
  require(std::isfinite(t.grad_clip) && t.grad_clip >= 0, "train.grad_clip: must be >= 0 (0: never)");
  require(t.seed >= 0, "train.seed: must be >= 0");
  require(t.log_every >= 1, "train.log_every: must be at least 1");
  require(t.eval_every >= 1, "train.eval_every: must be at least 1");
  require(t.eval_tasks >= 1 && t.eval_tasks <= (1 << 20), "train.eval_tasks: must be from 1 to 1048576");
  require(t.checkpoint_every >= 1, "train.checkpoint_every: must be at least 1");
  require(t.keep_last >= 1, "train.keep_last: must be at least 1");
}

IclConfig icl_config_from_json(const json& j, const std::string& origin) {
  if (!j.is_object()) wrong(origin, "a JSON object with sections task, model, train", j);
  for (const auto& item : j.items())
    if (item.key() != "task" && item.key() != "model" && item.key() != "train")
      throw ConfigError(origin + ": unknown section \"" + excerpt(item.key()) + "\" (expected task, model, train)");
  IclConfig c;
  read_section(j, "task", c.task, origin);
  read_section(j, "model", c.model, origin);
  read_section(j, "train", c.train, origin);
  try {
    validate(c);
  } catch (const ConfigError& e) {
    throw ConfigError(origin + ": " + e.what());
  }
  return c;
}

json to_json(const IclConfig& c) {
  return {{"task", write_section(c.task)}, {"model", write_section(c.model)}, {"train", write_section(c.train)}};
}

IclConfig load_icl_config(const std::string& path) { return icl_config_from_json(read_json_file(path), path); }

}  // namespace metalm::icl
