#include "command.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string_view>

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

std::vector<CommandInput> tokenizer_input(const std::string& spec) {
  if (spec == "gpt2") return {{"--tokenizer", default_gpt2_dir()}};
  for (const std::string_view prefix : {"gpt2:", "bpe:"})
    if (spec.rfind(prefix, 0) == 0) return {{"--tokenizer", spec.substr(prefix.size())}};
  return {};
}

}  // namespace metalm::cli
