// `metalm eval`: mean next-token cross-entropy of a checkpoint on a token
// file, a list of ids or a text (windows: see metalm/train/evaluate.hpp).
#include <iostream>

#include "command.hpp"
#include "token_ids.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/data/tokenizer.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/evaluate.hpp"

namespace metalm::cli {
namespace {

// The ids of `path`, each in [0, vocab).
std::vector<int64_t> read_ids(const std::string& path, int64_t vocab) {
  std::vector<int64_t> ids = parse_token_ids(read_file(path), path);
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (ids[i] >= vocab)
      throw FormatError(path + ": token id " + std::to_string(ids[i]) + " (number " + std::to_string(i + 1) +
                        ") is outside the model's vocabulary [0, " + std::to_string(vocab) + ")");
  return ids;
}

const Registration eval_command{"eval", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string checkpoint, data, ids, text;
    int64_t stride = 0, batch = 16;
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
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--batch", o->batch, "windows per forward pass")
      ->type_name("N")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  return std::function<int()>([o, &global]() {
    if (o->data.empty() && o->ids.empty() && o->text.empty())
      throw ConfigError("eval needs one of --data FILE.bin, --ids FILE, --text FILE");
    set_threads(global.threads);
    LoadedCheckpoint ckpt = load_checkpoint(o->checkpoint);
    const int64_t vocab = ckpt.config.model.vocab_size;
    std::vector<int64_t> tokens;
    if (!o->data.empty()) {
      const TokenDataset ds(o->data);
      if (ds.vocab_size() > vocab)
        throw FormatError(o->data + ": vocabulary of " + std::to_string(ds.vocab_size()) +
                          " ids exceeds the model's " + std::to_string(vocab));
      tokens.resize(static_cast<std::size_t>(ds.size()));
      ds.copy_to(0, ds.size(), tokens.data());
    } else if (!o->ids.empty()) {
      tokens = read_ids(o->ids, vocab);
    } else {
      if (ckpt.state.tokenizer.empty())
        throw ConfigError(ckpt.path + " records no tokenizer; evaluate token ids with --ids or --data");
      const auto tok = make_tokenizer(ckpt.state.tokenizer);
      try {
        tokens = tok->encode(read_file(o->text));
      } catch (const FormatError& e) {
        throw FormatError(o->text + ": " + e.what());
      }
    }
    if (tokens.size() < 2)
      throw FormatError("eval needs at least 2 tokens (got " + std::to_string(tokens.size()) + ")");
    const EvalResult r = evaluate_tokens(ckpt.model, tokens, o->stride, o->batch);
    std::cout << nlohmann::json{{"loss", r.loss}, {"ppl", r.perplexity()}, {"tokens", r.tokens}}.dump() << "\n";
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
