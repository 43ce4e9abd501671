// `metalm analyze`: the inner-optimization analysis of a checkpoint on a
// token file, a list of ids or a text, written as one JSON (the schema of
// docs/analysis-schema.md) and optionally as CSV tables.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "command.hpp"
#include "token_ids.hpp"
#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/csv_export.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/data/tokenizer.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/weights.hpp"
#include "metalm/train/checkpoint.hpp"

namespace metalm::cli {
namespace {

namespace fs = std::filesystem;

// Sizes from the options or, when absent, the checkpoint's config: each in the
// options' range, and batches x batch size x seq_len at most
// kMaxAnalysedTokens, so a typo is a one-line error rather than a huge
// allocation.
void check_sizes(int64_t n_batches, int64_t batch_size, int64_t seq_len, const AnalysisConfig& opts) {
  auto in_range = [](int64_t v, int64_t max, const char* option, const char* key) {
    if (v < 1 || v > max)
      throw ConfigError(std::string("analyze: ") + option + " (or " + key + ") = " + std::to_string(v) +
                        " is out of range: expected an integer from 1 to " + with_commas(max));
  };
  in_range(n_batches, kMaxBatches, "--batches", "analysis.batches");
  in_range(batch_size, kMaxBatch, "--batch-size", "analysis.batch_size");
  in_range(seq_len, kMaxTokens, "--seq-len", "train.seq_len");
  in_range(opts.chunk, kMaxChunk, "--chunk", "analysis.chunk");
  in_range(opts.freq_bins, kMaxFreqBins, "--freq-bins", "analysis.freq_bins");
  const int64_t tokens = n_batches * batch_size * seq_len;  // < 2^56: no overflow within the ranges above
  if (tokens > kMaxAnalysedTokens)
    throw ConfigError("analyze: " + with_commas(n_batches) + " batches x " + with_commas(batch_size) + " sequences x " +
                      with_commas(seq_len) + " tokens = " + with_commas(tokens) + " tokens, more than the " +
                      with_commas(kMaxAnalysedTokens) + " one analysis holds; lower --batches, --batch-size or --seq-len");
}

// A JSON number, or NaN for null (a statistic with no finite value).
double num(const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

// meta.json next to the token file, else in the run's data directory.
std::optional<DatasetMeta> find_meta(const std::string& explicit_path, const std::string& data_file,
                                     const std::string& config_dir) {
  if (!explicit_path.empty()) return read_dataset_meta(explicit_path);
  std::vector<fs::path> candidates;
  if (!data_file.empty()) candidates.push_back(fs::path(data_file).parent_path() / "meta.json");
  if (!config_dir.empty()) candidates.push_back(fs::path(config_dir) / "meta.json");
  for (const auto& c : candidates) {
    std::error_code ec;
    if (fs::is_regular_file(c, ec)) return read_dataset_meta(c.string());
  }
  return std::nullopt;
}

const Registration analyze_command{"analyze", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string checkpoint, data, ids, text, meta, out, csv, granularity, lens;
    int64_t batches = 0, batch_size = 0, seq_len = 0, chunk = 0, freq_bins = 0, seed = -1;
    bool control_untrained = false, allow_nonfinite = false, force = false;
    std::string device = "auto";
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("analyze", "measure how much each layer's update is a gradient step on the next-token loss");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory, or a run directory (its newest checkpoint)")
      ->type_name("DIR")->required();
  auto* data = cmd->add_option("--data", o->data, "token file (train.bin/val.bin from `metalm prepare`)")
                   ->type_name("FILE.bin")->check(CLI::ExistingFile);
  auto* ids = cmd->add_option("--ids", o->ids, "whitespace-separated decimal token ids")->type_name("FILE")
                  ->check(CLI::ExistingFile);
  auto* text = cmd->add_option("--text", o->text, "a text file, encoded with the checkpoint's tokenizer")
                   ->type_name("FILE")->check(CLI::ExistingFile);
  data->excludes(ids)->excludes(text);
  ids->excludes(text);
  cmd->add_option("--batches", o->batches, "batches analysed (default: the config's analysis.batches)")->type_name("N")
      ->check(int_range(1, kMaxBatches));
  cmd->add_option("--batch-size", o->batch_size, "sequences per batch (default: analysis.batch_size)")->type_name("B")
      ->check(int_range(1, kMaxBatch));
  cmd->add_option("--seq-len", o->seq_len, "tokens per sequence (default: train.seq_len)")->type_name("T")
      ->check(int_range(1, kMaxTokens));
  cmd->add_option("--granularity", o->granularity, "block | sublayer (default: analysis.granularity)")
      ->type_name("G")->check(CLI::IsMember({"block", "sublayer"}));
  cmd->add_option("--chunk", o->chunk, "positions per autograd chunk (default: analysis.chunk)")->type_name("N")
      ->check(int_range(1, kMaxChunk));
  cmd->add_option("--freq-bins", o->freq_bins, "token-frequency bins (default: analysis.freq_bins)")->type_name("N")
      ->check(int_range(1, kMaxFreqBins));
  cmd->add_option("--seed", o->seed, "seed of the random-target control (default: analysis.seed)")->type_name("S")
      ->check(int_range(0));
  cmd->add_option("--meta", o->meta, "dataset dir or meta.json with the training token counts "
                                     "(default: beside --data, else the run's data.dir)")->type_name("PATH");
  cmd->add_option("--lens", o->lens, "logit | tuned:LENS.safetensors (from `metalm lens-train`); "
                                     "default: analysis.lens")->type_name("LENS");
  cmd->add_flag("--control-untrained", o->control_untrained,
                "also analyse a freshly initialised model of the same config (key control_untrained)");
  cmd->add_flag("--allow-nonfinite", o->allow_nonfinite,
                "load weights holding NaN or Inf (forensics; refused by default)");
  cmd->add_option("--out", o->out, "output JSON file")->type_name("FILE.json")->required();
  cmd->add_option("--csv", o->csv, "also write steps.csv, states.csv, by_position.csv here")->type_name("DIR");
  cmd->add_flag("--force", o->force, "replace an existing --out file and --csv directory");
  add_device_option(*cmd, o->device);

  return std::function<int()>([o, &global]() {
    if (o->data.empty() && o->ids.empty() && o->text.empty())
      throw ConfigError("analyze: give the tokens to analyse with --data, --ids or --text");
    // What analyze reads, which its outputs may not overlap.
    const std::string lens_path = o->lens.rfind("tuned:", 0) == 0 ? o->lens.substr(6) : std::string();
    const std::vector<CommandInput> inputs{{"--checkpoint", checkpoint_to_load(o->checkpoint), /*tree=*/true},
                                           {"--data", o->data}, {"--ids", o->ids}, {"--text", o->text},
                                           {"--meta", o->meta}, {"--lens", lens_path}};
    check_output(o->out, OutputKind::File, o->force, "--out", inputs);
    if (!o->csv.empty()) check_output(o->csv, OutputKind::Directory, o->force, "--csv", inputs);
    set_threads(global.threads);
    const c10::Device device = resolve_device(device_kind(o->device), "--device");
    LoadedCheckpoint ck = load_checkpoint(o->checkpoint, LoadWeightsOptions{o->allow_nonfinite});
    ck.model->to(device);  // the analysis itself always runs in fp32
    const RunConfig& cfg = ck.config;
    const AnalysisConfig& ac = cfg.analysis;
    const int64_t n_batches = o->batches ? o->batches : ac.batches;
    const int64_t batch_size = o->batch_size ? o->batch_size : ac.batch_size;
    if (o->seq_len > cfg.model.context)
      throw ConfigError("analyze: --seq-len " + std::to_string(o->seq_len) + " is longer than the context of " +
                        ck.path + " (" + std::to_string(cfg.model.context) + " tokens)");
    const int64_t seq_len = o->seq_len ? o->seq_len : cfg.train.seq_len;  // train.seq_len <= context (resolve)
    AnalysisConfig opts = ac;
    if (!o->granularity.empty()) opts.granularity = o->granularity == "sublayer" ? Granularity::Sublayer : Granularity::Block;
    if (o->chunk) opts.chunk = o->chunk;
    if (o->freq_bins) opts.freq_bins = o->freq_bins;
    if (o->seed >= 0) opts.seed = o->seed;
    if (!o->lens.empty()) {
      opts.lens = o->lens;
      if (opts.lens != "logit" && opts.tuned_lens_path().empty())
        throw ConfigError("analyze: --lens " + o->lens + ": expected logit or tuned:LENS.safetensors");
    }
    // The lens is read once, here: a bad lens file fails before any batch is read or analysed.
    const std::shared_ptr<const Lens> lens = make_lens(opts, cfg.model);
    // The config's values are checked like the options', before anything is allocated.
    check_sizes(n_batches, batch_size, seq_len, opts);
    check_memory_estimate(analysis_bytes(cfg.model, n_batches, batch_size, seq_len, opts) +
                              (o->control_untrained ? parameter_bytes(cfg.model) : 0.0),
                          "analyze --batch-size " + std::to_string(batch_size) + " x --seq-len " +
                              std::to_string(seq_len) + " (--chunk " + std::to_string(opts.chunk) + "; a model of " +
                              std::to_string(cfg.model.n_layer) + " layers, d_model " +
                              std::to_string(cfg.model.d_model) + ", vocabulary " +
                              std::to_string(cfg.model.vocab_size) + ")");

    std::vector<Batch> batches;
    nlohmann::json source;
    if (!o->data.empty()) {
      TokenDataset ds(o->data);
      ds.check_vocab(cfg.model.vocab_size, "the model");
      batches = fixed_eval_batches(ds, n_batches, batch_size, seq_len);
      source = {{"data", o->data}};
    } else {
      std::vector<int64_t> tokens;
      if (!o->ids.empty()) {
        tokens = read_token_ids(o->ids, cfg.model.vocab_size);
        source = {{"ids", o->ids}};
      } else {
        if (ck.state.tokenizer.empty())
          throw ConfigError("analyze: checkpoint " + ck.path + " records no tokenizer; use --ids or --data");
        tokens = read_text_ids(*make_tokenizer(ck.state.tokenizer), o->text);
        source = {{"text", o->text}, {"tokenizer", ck.state.tokenizer}};
      }
      batches = id_batches(tokens, seq_len, batch_size, n_batches, cfg.model.vocab_size,
                                 o->ids.empty() ? o->text : o->ids);
    }
    const std::optional<DatasetMeta> meta = find_meta(o->meta, o->data, cfg.data.dir);
    if (!meta) spdlog::warn("analyze: no meta.json found; frequency aggregates are left out (use --meta)");

    spdlog::info("analyze: {} (step {}), {} batch(es) of {} x {} tokens, {} granularity, {} lens", ck.path,
                 ck.state.step, batches.size(), batches[0].inputs.size(0), batches[0].inputs.size(1),
                 to_string(opts.granularity), opts.lens);
    nlohmann::json result = analyze_model(ck.model, batches, opts, meta ? &*meta : nullptr, *lens);
    result["checkpoint"] = ck.path;
    result["step"] = ck.state.step;
    result["source"] = source;
    if (o->control_untrained) {
      spdlog::info("analyze: untrained control (fresh model, seed {})", cfg.train.seed);
      result["control_untrained"] =
          analyze_untrained(cfg.model, static_cast<uint64_t>(cfg.train.seed), batches, opts, meta ? &*meta : nullptr);
    }
    // The gap to the strongest matched control: its mean (0) or interval end (1, 2).
    auto gap_of = [](const nlohmann::json& st, int part) -> double {
      if (!st["strongest_control"].is_string()) return std::nan("");
      const nlohmann::json& g = st["gaps"][st["strongest_control"].get<std::string>()];
      if (part == 0) return num(g["mean"]);
      return g["ci"].is_array() ? num(g["ci"][static_cast<size_t>(part - 1)]) : std::nan("");
    };
    auto log_steps = [&gap_of](const nlohmann::json& r, const char* title) {
      spdlog::info("analyze: {}", title);
      for (const auto& st : r["steps"])
        spdlog::info("  {:>22} -> {:<22} loss {:.3f} -> {:.3f}  alignment {:+.3f}, gap to the {} control {:+.3f} [{:+.3f}, {:+.3f}]",
                     st["from"].get<std::string>(), st["to"].get<std::string>(), num(st["loss_before"]),
                     num(st["loss_after"]), num(st["alignment"]["mean"]),
                     st["strongest_control"].is_string() ? st["strongest_control"].get<std::string>() : "strongest",
                     gap_of(st, 0), gap_of(st, 1), gap_of(st, 2));
    };
    log_steps(result, "the checkpoint");
    if (result.contains("control_untrained"))
      log_steps(result["control_untrained"], "the untrained control (\"control_untrained\" in the output)");
    write_json_file(o->out, result);
    if (!o->csv.empty()) write_analysis_csv(result, o->csv);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
