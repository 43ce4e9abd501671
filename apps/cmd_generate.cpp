// `metalm generate`: samples a continuation of a prompt from a checkpoint and
// prints prompt + continuation as text.
#include <iostream>

#include "command.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/data/tokenizer.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/weights.hpp"
#include "metalm/train/checkpoint.hpp"

namespace metalm::cli {
namespace {

// Temperatures below this sample greedily: so cold a softmax only breaks
// near-ties among the top logits, and below about 1e-37 the logits divided
// by the temperature overflow a float (torch then refuses the probabilities).
constexpr double kGreedyBelow = 1e-6;

const Registration generate_command{"generate", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string checkpoint, prompt;
    int64_t max_new_tokens = 200, top_k = 0;
    double temperature = 1.0;
    uint64_t seed = 1337;
    bool allow_nonfinite = false;
    std::string device = "auto", precision = "fp32";
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("generate", "print the prompt and a sampled continuation");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory, or a run directory (its newest checkpoint)")
      ->type_name("DIR")
      ->required();
  cmd->add_option("--prompt", o->prompt, "text to continue; empty: start after an end-of-text token")
      ->type_name("TEXT");
  cmd->add_option("--max-new-tokens", o->max_new_tokens, "tokens to sample")
      ->type_name("N")
      ->check(int_range(0, kMaxTokens))
      ->capture_default_str();
  cmd->add_option("--temperature", o->temperature, "softmax temperature; 0 (or below 1e-6) means greedy")
      ->type_name("T")
      ->check(real_range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--top-k", o->top_k, "sample among the K most likely tokens; 0 means all")
      ->type_name("K")
      ->check(int_range(0))
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the sampler, 0 to 2^64 - 1")->type_name("S")->check(seed_range())
      ->capture_default_str();
  cmd->add_flag("--allow-nonfinite", o->allow_nonfinite,
                "load weights holding NaN or Inf (forensics; refused by default)");
  add_device_option(*cmd, o->device);
  add_precision_option(*cmd, o->precision);

  return std::function<int()>([o, &global]() {
    set_threads(global.threads);
    const c10::Device device = resolve_device(device_kind(o->device), "--device");
    LoadedCheckpoint ckpt = load_checkpoint(o->checkpoint, LoadWeightsOptions{o->allow_nonfinite});
    ckpt.model->to(device);
    if (ckpt.state.tokenizer.empty())
      throw ConfigError(ckpt.path + " records no tokenizer, so text cannot be generated");
    const auto tok = make_tokenizer(ckpt.state.tokenizer);
    if (tok->vocab_size() > ckpt.config.model.vocab_size)
      throw FormatError("tokenizer " + ckpt.state.tokenizer + " has " + std::to_string(tok->vocab_size()) +
                        " ids, more than the model's vocab_size " + std::to_string(ckpt.config.model.vocab_size));
    std::vector<int64_t> prompt = tok->encode(o->prompt);
    const bool empty_prompt = prompt.empty();
    if (empty_prompt) prompt.push_back(tok->eot_id());
    at::Tensor out;  // [T + max_new_tokens]
    {
      AutocastScope autocast(precision_kind(o->precision), device);
      const double temperature = o->temperature < kGreedyBelow ? 0.0 : o->temperature;
      out = ckpt.model->generate(at::tensor(prompt, at::kLong).to(device), o->max_new_tokens, temperature,
                                 o->top_k, o->seed).cpu();
    }
    const auto* p = out.data_ptr<int64_t>();
    std::vector<int64_t> ids(p + (empty_prompt ? 1 : 0), p + out.numel());
    std::cout << tok->decode(ids) << "\n";
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
