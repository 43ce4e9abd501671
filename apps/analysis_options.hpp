// The options `metalm analyze` and `metalm intervene` share, and the steps
// both take before their own work: the checkpoint, the tokens (--data, --ids
// and, for analyze, --text), their sizes, the analysis.* keys as options
// (KeyOptions), --allow-nonfinite and --device; the checkpoint loaded with
// the options applied to its config, the sizes checked, the batches read.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "command.hpp"
#include "metalm/analysis/lens.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/train/checkpoint.hpp"

namespace metalm::cli {

struct AnalysisRunOptions {
  explicit AnalysisRunOptions(std::string name) : command(std::move(name)) {}

  std::string command;  // "analyze", the first word of every message
  std::string checkpoint, data, ids, text, device = "auto";
  int64_t seq_len = 0;  // 0: train.seq_len
  bool allow_nonfinite = false, takes_text = false;
  KeyOptions keys;  // analysis.batches, batch_size, granularity, chunk, seed, lens (and what the command adds)
};

// Adds --checkpoint, --data, --ids (and --text when `with_text`), --batches,
// --batch-size, --seq-len, --granularity, --chunk, --seed, --lens,
// --allow-nonfinite and --device; `seed_help` and `lens_help` say what this
// command draws with the seed and takes the lens's gradient for ("": the
// config's documentation of analysis.seed and analysis.lens).
void add_analysis_run_options(CLI::App& cmd, AnalysisRunOptions& o, bool with_text, const std::string& seed_help,
                              const std::string& lens_help);

// What the command reads (the checkpoint as a tree, the tokens, the tuned
// lens), which its outputs may not overlap, and `more` of its own. ConfigError
// when no tokens are given.
std::vector<CommandInput> analysis_inputs(const AnalysisRunOptions& o, const std::vector<CommandInput>& more = {});

// The checkpoint loaded on the device, its config with the options applied
// (KeyOptions::apply), the sizes of the run: each in its option's range and
// their product at most kMaxAnalysedTokens (ConfigError naming the option and
// the key), --seq-len at most the model's context; and the lens of
// analysis.lens (make_lens: a bad lens file fails here, before any batch is
// read).
struct AnalysisRun {
  LoadedCheckpoint ck;
  int64_t n_batches = 0, batch_size = 0, seq_len = 0;
  std::shared_ptr<const Lens> lens;
};
AnalysisRun load_analysis_run(const AnalysisRunOptions& o);

// ConfigError "COMMAND: OPTION (or KEY) = V is out of range: expected an
// integer from 1 to MAX" unless 1 <= v <= max: a size from the options or the
// checkpoint's config, checked like the options' own.
void check_size(const std::string& command, int64_t v, int64_t max, const std::string& option, const std::string& key);

// The batches of --data, --ids or --text (encoded with the checkpoint's
// tokenizer), and where they came from, for the output's "source".
struct AnalysisBatches {
  std::vector<Batch> batches;
  nlohmann::json source;
};
AnalysisBatches read_analysis_batches(const AnalysisRunOptions& o, const AnalysisRun& run);

// The line search's multipliers of --alphas ("0,0.5,1": 1 to 64 finite
// numbers); ConfigError naming --alphas otherwise.
std::vector<double> parse_alphas(const std::string& text);

}  // namespace metalm::cli
