#include "command.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string_view>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/data/tokenizer.hpp"

namespace metalm::cli {

std::vector<RegisteredCommand>& registry() {
  static std::vector<RegisteredCommand> commands;
  return commands;
}

Registration::Registration(std::string name, CommandSetup setup) {
  registry().push_back({std::move(name), std::move(setup)});
}

void add_config_options(CLI::App& cmd, std::string& config_path, std::vector<std::string>& overrides,
                        bool config_required) {
  auto* opt = cmd.add_option("-c,--config", config_path, "experiment config (JSON)")
                  ->type_name("FILE")
                  ->check(CLI::ExistingFile);
  if (config_required) opt->required();
  cmd.add_option("--set", overrides, "override a config key, e.g. --set model.n_layer=6 (repeatable)")
      ->type_name("KEY=VALUE")
      ->take_all()
      ->allow_extra_args(false);
}

void KeyOptions::add(CLI::App& cmd, const std::string& key, const std::string& what,
                     const std::optional<CLI::Validator>& range) {
  const std::vector<ConfigKey> all = config_keys();
  const auto found = std::find_if(all.begin(), all.end(), [&](const ConfigKey& k) { return k.path == key; });
  if (found == all.end()) throw std::logic_error("KeyOptions::add: no config key " + key);
  const std::string name = key.substr(key.rfind('.') + 1);
  std::string flag = "--" + name, type = found->type;
  std::replace(flag.begin(), flag.end(), '_', '-');
  if (type == "int") {
    type = "N";
  } else if (type == "float") {
    type = "X";
  } else if (type == "string") {
    type.clear();
    for (const char ch : name) type += static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  } else {
    type.erase(std::remove(type.begin(), type.end(), ' '), type.end());  // an enum's names: a|b
  }
  Key& k = keys_.emplace_back(Key{key, "", nullptr});
  k.option = cmd.add_option(flag, k.value, (what.empty() ? found->doc : what) + " (default: " + key + ")")
                 ->type_name(type);
  if (range) k.option->check(*range);
  // A ParseError of its own, not the message CLI11 would prefix with the
  // option's name alone: "--lens nope: analysis.lens = nope: ...".
  k.option->check(CLI::Validator(
      [key, flag](std::string& text) -> std::string {
        try {
          RunConfig defaults;
          apply_override(defaults, key + "=" + text);
          resolve(defaults);
        } catch (const ConfigError& e) {
          throw CLI::ParseError(flag + " " + excerpt(text) + ": " + e.what(), CLI::ExitCodes::ValidationError);
        }
        return "";
      },
      ""));
}

void KeyOptions::apply(RunConfig& c) const {
  bool given = false;
  for (const Key& k : keys_)
    if (k.option->count() > 0) {
      apply_override(c, k.key + "=" + k.value);
      given = true;
    }
  if (given) resolve(c);
}

std::string KeyOptions::given(const std::string& key) const {
  for (const Key& k : keys_)
    if (k.key == key && k.option->count() > 0) return k.value;
  return "";
}

double parameter_bytes(const ModelConfig& m) {
  const double d = static_cast<double>(m.d_model), v = static_cast<double>(m.vocab_size);
  const double mlp = static_cast<double>(m.d_mlp ? m.d_mlp : 4 * m.d_model);
  const double per_layer = 4 * d * d + 2 * d * mlp + 9 * d + mlp;
  return 4.0 * (v * d * (m.tie_embeddings ? 1 : 2) + static_cast<double>(m.context) * d +
                static_cast<double>(m.n_layer) * per_layer);
}

double activation_bytes(const ModelConfig& m, int64_t batch, int64_t seq_len) {
  const double tokens = static_cast<double>(batch) * static_cast<double>(seq_len);
  const double d = static_cast<double>(m.d_model), v = static_cast<double>(m.vocab_size);
  const double mlp = static_cast<double>(m.d_mlp ? m.d_mlp : 4 * m.d_model);
  const double attention = 2.0 * static_cast<double>(m.n_head) * static_cast<double>(seq_len);  // scores, probs
  return 4.0 * tokens * (static_cast<double>(m.n_layer) * (8 * d + 2 * mlp + attention) + 3 * v);
}

double inference_bytes(const ModelConfig& m, int64_t batch, int64_t seq_len) {
  const double tokens = static_cast<double>(batch) * static_cast<double>(seq_len);
  const double d = static_cast<double>(m.d_model), v = static_cast<double>(m.vocab_size);
  const double mlp = static_cast<double>(m.d_mlp ? m.d_mlp : 4 * m.d_model);
  const double attention = 2.0 * static_cast<double>(m.n_head) * static_cast<double>(seq_len);
  return 4.0 * tokens * (8 * d + 2 * mlp + attention + 3 * v);
}

double training_bytes(const RunConfig& c) {
  return 4 * parameter_bytes(c.model) + activation_bytes(c.model, c.train.batch_size, c.train.seq_len);
}

double analysis_bytes(const ModelConfig& m, int64_t n_batches, int64_t batch_size, int64_t seq_len,
                      const AnalysisConfig& a) {
  const double b = static_cast<double>(batch_size), t = static_cast<double>(seq_len);
  const double d = static_cast<double>(m.d_model), v = static_cast<double>(m.vocab_size);
  const double states = static_cast<double>(m.n_layer) * (a.granularity == Granularity::Sublayer ? 2 : 1) + 1;
  const double per_batch = inference_bytes(m, batch_size, seq_len) + 8 * b * t * v + 16 * states * b * t * d +
                           32 * static_cast<double>(a.chunk) * v;
  return parameter_bytes(m) + 16 * static_cast<double>(n_batches) * b * t + per_batch;
}

void check_output(const std::string& path, OutputKind kind, bool force, const std::string& option,
                  const std::vector<CommandInput>& inputs) {
  namespace fs = std::filesystem;
  check_output_path(path, kind, force, option, inputs);
  const std::string named = option + " " + path;
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  while (kind == OutputKind::Directory && !fs::exists(dir, ec)) {
    fs::path up = dir.parent_path();
    if (up.empty()) up = ".";
    if (up == dir) break;
    dir = up;
  }
  const fs::file_status st = fs::status(dir, ec);
  if (!fs::exists(st))
    throw ConfigError(named + ": its directory " + dir.string() + " does not exist; create it first");
  if (!fs::is_directory(st)) throw ConfigError(named + ": " + dir.string() + " is not a directory");
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    throw ConfigError(named + ": cannot write in " + dir.string() + ": " + std::strerror(errno));
}

std::vector<CommandInput> tokenizer_input(const std::string& spec) {
  if (spec == "gpt2") return {{"--tokenizer", default_gpt2_dir()}};
  for (const std::string_view prefix : {"gpt2:", "bpe:"})
    if (spec.rfind(prefix, 0) == 0) return {{"--tokenizer", spec.substr(prefix.size())}};
  return {};
}

void add_device_option(CLI::App& cmd, std::string& device) {
  cmd.add_option("--device", device, "where the model runs: auto (cuda when available, else cpu) | cpu | cuda")
      ->type_name("D")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))
      ->capture_default_str();
}

void add_precision_option(CLI::App& cmd, std::string& precision) {
  cmd.add_option("--precision", precision,
                 "fp32 | bf16 | auto (bf16: the forward pass's matmuls under autocast in bfloat16; auto: bf16 where "
                 "the device multiplies bf16 natively, else fp32)")
      ->type_name("P")
      ->check(CLI::IsMember({"fp32", "bf16", "auto"}))
      ->capture_default_str();
}

DeviceKind device_kind(const std::string& device) {
  return device == "cpu" ? DeviceKind::Cpu : device == "cuda" ? DeviceKind::Cuda : DeviceKind::Auto;
}

Precision precision_kind(const std::string& precision) {
  return precision == "bf16" ? Precision::Bf16 : precision == "auto" ? Precision::Auto : Precision::Fp32;
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -(n + 1) + uint64_t{1} : static_cast<uint64_t>(n));
  for (auto i = static_cast<std::ptrdiff_t>(digits.size()) - 3; i > 0; i -= 3) digits.insert(static_cast<std::size_t>(i), ",");
  return (n < 0 ? "-" : "") + digits;
}

CLI::Validator int_range(int64_t min, int64_t max) {
  const std::string range = max == std::numeric_limits<int64_t>::max()
                                ? "an integer of at least " + with_commas(min)
                                : "an integer from " + with_commas(min) + " to " + with_commas(max);
  auto check = [=](std::string& text) -> std::string {
    errno = 0;
    char* end = nullptr;
    const long long v = std::strtoll(text.c_str(), &end, 10);
    if (text.empty() || *end != '\0') return "\"" + excerpt(text) + "\" is not an integer: expected " + range;
    if (errno == ERANGE || v < min || v > max) return excerpt(text) + " is out of range: expected " + range;
    return "";
  };
  return CLI::Validator(check, max == std::numeric_limits<int64_t>::max()
                                   ? ">=" + std::to_string(min)
                                   : "in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
}

CLI::Validator seed_range() {
  const std::string range = "an integer from 0 to 18,446,744,073,709,551,615 (2^64 - 1)";
  auto check = [=](std::string& text) -> std::string {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos)
      return "\"" + excerpt(text) + "\" is not a seed: expected " + range;
    errno = 0;
    (void)std::strtoull(text.c_str(), nullptr, 10);
    if (errno == ERANGE) return excerpt(text) + " is out of range: expected " + range;
    return "";
  };
  return CLI::Validator(check, "in [0, 2^64 - 1]");
}

CLI::Validator real_range(double min, double max) {
  auto fmt = [](double x) {
    std::string s = std::to_string(x);
    s.erase(s.find_last_not_of('0') + 1);
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
  };
  const std::string range = "a number from " + fmt(min) + " to " + fmt(max);
  auto check = [=](std::string& text) -> std::string {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0') return "\"" + excerpt(text) + "\" is not a number: expected " + range;
    if (!std::isfinite(v) || v < min || v > max) return excerpt(text) + " is out of range: expected " + range;
    return "";
  };
  return CLI::Validator(check, "in [" + fmt(min) + ", " + fmt(max) + "]");
}

}  // namespace metalm::cli
