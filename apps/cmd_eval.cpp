// `metalm eval`: mean next-token cross-entropy of a checkpoint on a token
// file, a list of ids or a text (windows: see metalm/train/evaluate.hpp).
#include <algorithm>
#include <cmath>
#include <iostream>

#include "command.hpp"
#include "token_ids.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/data/tokenizer.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/weights.hpp"
#include "metalm/train/evaluate.hpp"

namespace metalm::cli {
namespace {

const Registration eval_command{"eval", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string checkpoint, data, ids, text;
    int64_t stride = 0, batch = 16;
    bool allow_nonfinite = false;
    std::string device = "auto", precision = "fp32";
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "eval", "print {\"loss\", \"ppl\", \"tokens\"}: mean next-token cross-entropy (nats) of a checkpoint");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory, or a run directory (its newest checkpoint)")
      ->type_name("DIR")
      ->required();
  auto* data = cmd->add_option("--data", o->data, "a token file (train.bin / val.bin of `metalm prepare`)")
                   ->type_name("FILE.bin");
  auto* ids = cmd->add_option("--ids", o->ids, "a file of whitespace-separated token ids")->type_name("FILE");
  auto* text = cmd->add_option("--text", o->text, "a text file, tokenized with the checkpoint's tokenizer")
                   ->type_name("FILE");
  data->excludes(ids)->excludes(text);
  ids->excludes(text);
  cmd->add_option("--stride", o->stride,
                  "window stride for inputs longer than the context; 0 means the context (non-overlapping windows)")
      ->type_name("N")
      ->check(int_range(0, kMaxTokens))
      ->capture_default_str();
  cmd->add_option("--batch", o->batch, "windows per forward pass")
      ->type_name("N")
      ->check(int_range(1, kMaxBatch))
      ->capture_default_str();
  cmd->add_flag("--allow-nonfinite", o->allow_nonfinite,
                "load weights holding NaN or Inf (forensics; refused by default)");
  add_device_option(*cmd, o->device);
  add_precision_option(*cmd, o->precision);

  return std::function<int()>([o, &global]() {
    if (o->data.empty() && o->ids.empty() && o->text.empty())
      throw ConfigError("eval needs one of --data FILE.bin, --ids FILE, --text FILE");
    set_threads(global.threads);
    const c10::Device device = resolve_device(device_kind(o->device), "--device");
    LoadedCheckpoint ckpt = load_checkpoint(o->checkpoint, LoadWeightsOptions{o->allow_nonfinite});
    ckpt.model->to(device);
    const int64_t vocab = ckpt.config.model.vocab_size;
    std::vector<int64_t> tokens;
    if (!o->data.empty()) {
      const TokenDataset ds(o->data);
      ds.check_vocab(vocab, "the model");
      tokens.resize(static_cast<std::size_t>(ds.size()));
      ds.copy_to(0, ds.size(), tokens.data());
    } else if (!o->ids.empty()) {
      tokens = read_token_ids(o->ids, vocab);
    } else {
      if (ckpt.state.tokenizer.empty())
        throw ConfigError(ckpt.path + " records no tokenizer; evaluate token ids with --ids or --data");
      tokens = read_text_ids(*make_tokenizer(ckpt.state.tokenizer), o->text);
    }
    if (tokens.size() < 2) {
      const std::string& input = !o->data.empty() ? o->data : !o->ids.empty() ? o->ids : o->text;
      throw FormatError(input + ": " + std::to_string(tokens.size()) + " token(s); eval needs at least 2");
    }
    // Checked like analyze's --seq-len: before any window is evaluated, exit 2.
    const int64_t context = ckpt.config.model.context;
    if (o->stride > context)
      throw ConfigError("eval: --stride " + std::to_string(o->stride) + " is longer than the context of " +
                        ckpt.path + " (" + std::to_string(context) + " tokens)");
    const int64_t n = static_cast<int64_t>(tokens.size()), stride = o->stride ? o->stride : context;
    const int64_t windows = 1 + (std::max<int64_t>(0, n - 1 - context) + stride - 1) / stride;
    check_memory_estimate(parameter_bytes(ckpt.config.model) +
                              inference_bytes(ckpt.config.model, std::min(o->batch, windows), std::min(context, n - 1)),
                          "eval --batch " + std::to_string(o->batch) + " (windows of " + std::to_string(context) +
                              " tokens of a model with vocabulary " + std::to_string(ckpt.config.model.vocab_size) +
                              ")");
    const EvalResult r = evaluate_tokens(ckpt.model, tokens, o->stride, o->batch, precision_kind(o->precision));
    // JSON has no NaN: printing null with exit code 0 would pass for a result.
    if (!std::isfinite(r.loss))
      throw NumericError("eval: the loss is " + std::string(std::isnan(r.loss) ? "nan" : "inf") + " over " +
                         std::to_string(r.tokens) + " tokens of " + ckpt.path + " (non-finite weights or logits)");
    std::cout << nlohmann::json{{"loss", r.loss}, {"ppl", r.perplexity()}, {"tokens", r.tokens}}.dump() << "\n";
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
