#include "analysis_options.hpp"

#include <cmath>
#include <sstream>

#include "token_ids.hpp"
#include "metalm/core/error.hpp"
#include "metalm/data/tokenizer.hpp"
#include "metalm/model/device.hpp"

namespace metalm::cli {

void add_analysis_run_options(CLI::App& cmd, AnalysisRunOptions& o, bool with_text, const std::string& seed_help,
                              const std::string& lens_help) {
  cmd.add_option("--checkpoint", o.checkpoint, "checkpoint directory, or a run directory (its newest checkpoint)")
      ->type_name("DIR")->required();
  auto* data = cmd.add_option("--data", o.data, "token file (train.bin/val.bin from `metalm prepare`)")
                   ->type_name("FILE.bin")->check(CLI::ExistingFile);
  auto* ids = cmd.add_option("--ids", o.ids, "whitespace-separated decimal token ids")->type_name("FILE")
                  ->check(CLI::ExistingFile);
  data->excludes(ids);
  o.takes_text = with_text;
  if (with_text) {
    auto* text = cmd.add_option("--text", o.text, "a text file, encoded with the checkpoint's tokenizer")
                     ->type_name("FILE")->check(CLI::ExistingFile);
    data->excludes(text);
    ids->excludes(text);
  }
  o.keys.add(cmd, "analysis.batches", "batches (fixed windows spread over the tokens)", int_range(1, kMaxBatches));
  o.keys.add(cmd, "analysis.batch_size", "", int_range(1, kMaxBatch));
  cmd.add_option("--seq-len", o.seq_len, "tokens per sequence (default: train.seq_len)")->type_name("T")
      ->check(int_range(1, kMaxTokens));
  o.keys.add(cmd, "analysis.granularity", "");
  o.keys.add(cmd, "analysis.chunk", "", int_range(1, kMaxChunk));
  o.keys.add(cmd, "analysis.seed", seed_help, int_range(0));
  o.keys.add(cmd, "analysis.lens", lens_help);
  cmd.add_flag("--allow-nonfinite", o.allow_nonfinite, "load weights holding NaN or Inf (forensics; refused by default)");
  add_device_option(cmd, o.device);
}

std::vector<CommandInput> analysis_inputs(const AnalysisRunOptions& o, const std::vector<CommandInput>& more) {
  if (o.data.empty() && o.ids.empty() && o.text.empty())
    throw ConfigError(o.command + ": give the tokens with " + (o.takes_text ? "--data, --ids or --text" : "--data or --ids"));
  AnalysisConfig lens;
  lens.lens = o.keys.given("analysis.lens");
  std::vector<CommandInput> inputs{{"--checkpoint", checkpoint_to_load(o.checkpoint), /*tree=*/true},
                                   {"--data", o.data}, {"--ids", o.ids}, {"--text", o.text},
                                   {"--lens", lens.tuned_lens_path()}};
  inputs.insert(inputs.end(), more.begin(), more.end());
  return inputs;
}

void check_size(const std::string& command, int64_t v, int64_t max, const std::string& option, const std::string& key) {
  if (v < 1 || v > max)
    throw ConfigError(command + ": " + option + " (or " + key + ") = " + std::to_string(v) +
                      " is out of range: expected an integer from 1 to " + with_commas(max));
}

AnalysisRun load_analysis_run(const AnalysisRunOptions& o) {
  const c10::Device device = resolve_device(device_kind(o.device), "--device");
  AnalysisRun run;
  run.ck = load_checkpoint(o.checkpoint, LoadWeightsOptions{o.allow_nonfinite});
  run.ck.model->to(device);  // the analysis itself always runs in fp32
  RunConfig& cfg = run.ck.config;
  if (o.seq_len > cfg.model.context)
    throw ConfigError(o.command + ": --seq-len " + std::to_string(o.seq_len) + " is longer than the context of " +
                      run.ck.path + " (" + std::to_string(cfg.model.context) + " tokens)");
  o.keys.apply(cfg);
  run.n_batches = cfg.analysis.batches;
  run.batch_size = cfg.analysis.batch_size;
  run.seq_len = o.seq_len ? o.seq_len : cfg.train.seq_len;  // train.seq_len <= context (resolve)
  // The config's values are checked like the options', before anything is allocated.
  check_size(o.command, run.n_batches, kMaxBatches, "--batches", "analysis.batches");
  check_size(o.command, run.batch_size, kMaxBatch, "--batch-size", "analysis.batch_size");
  check_size(o.command, run.seq_len, kMaxTokens, "--seq-len", "train.seq_len");
  check_size(o.command, cfg.analysis.chunk, kMaxChunk, "--chunk", "analysis.chunk");
  const int64_t tokens = run.n_batches * run.batch_size * run.seq_len;  // < 2^56 within the ranges: no overflow
  if (tokens > kMaxAnalysedTokens)
    throw ConfigError(o.command + ": " + with_commas(run.n_batches) + " batches x " + with_commas(run.batch_size) +
                      " sequences x " + with_commas(run.seq_len) + " tokens = " + with_commas(tokens) +
                      " tokens, more than the " + with_commas(kMaxAnalysedTokens) +
                      " one analysis holds; lower --batches, --batch-size or --seq-len");
  run.lens = make_lens(cfg.analysis, cfg.model);
  return run;
}

AnalysisBatches read_analysis_batches(const AnalysisRunOptions& o, const AnalysisRun& run) {
  const LoadedCheckpoint& ck = run.ck;
  const int64_t vocab = ck.config.model.vocab_size;
  AnalysisBatches out;
  if (!o.data.empty()) {
    TokenDataset ds(o.data);
    ds.check_vocab(vocab, "the model");
    out.batches = fixed_eval_batches(ds, run.n_batches, run.batch_size, run.seq_len);
    out.source = {{"data", o.data}};
    return out;
  }
  std::vector<int64_t> tokens;
  if (!o.ids.empty()) {
    tokens = read_token_ids(o.ids, vocab);
    out.source = {{"ids", o.ids}};
  } else {
    if (ck.state.tokenizer.empty())
      throw ConfigError(o.command + ": checkpoint " + ck.path + " records no tokenizer; use --ids or --data");
    tokens = read_text_ids(*make_tokenizer(ck.state.tokenizer), o.text);
    out.source = {{"text", o.text}, {"tokenizer", ck.state.tokenizer}};
  }
  out.batches = id_batches(tokens, run.seq_len, run.batch_size, run.n_batches, vocab, o.ids.empty() ? o.text : o.ids);
  return out;
}

std::vector<double> parse_alphas(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    double v = NAN;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !std::isfinite(v))
      throw ConfigError("--alphas: expected comma-separated finite numbers, got '" + text + "'");
    out.push_back(v);
  }
  if (out.empty() || out.size() > 64) throw ConfigError("--alphas: expected from 1 to 64 numbers, got '" + text + "'");
  return out;
}

}  // namespace metalm::cli
