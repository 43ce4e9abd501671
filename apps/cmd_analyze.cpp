// `metalm analyze`: the inner-optimization analysis of a checkpoint on a
// token file, a list of ids or a text, written as one JSON (the schema of
// docs/analysis-schema.md) and optionally as CSV tables.
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>

#include "analysis_options.hpp"
#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/csv_export.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/data/dataset_meta.hpp"
#include "metalm/train/checkpoint.hpp"

namespace metalm::cli {
namespace {

namespace fs = std::filesystem;

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
    AnalysisRunOptions run{"analyze"};
    std::string meta, out, csv;
    bool control_untrained = false, force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("analyze", "measure how much each layer's update is a gradient step on the next-token loss");
  add_analysis_run_options(*cmd, o->run, /*with_text=*/true, "", "");
  o->run.keys.add(*cmd, "analysis.freq_bins", "", int_range(1, kMaxFreqBins));
  cmd->add_option("--meta", o->meta, "dataset dir or meta.json with the training token counts "
                                     "(default: beside --data, else the run's data.dir)")->type_name("PATH");
  cmd->add_flag("--control-untrained", o->control_untrained,
                "also analyse a freshly initialised model of the same config (key control_untrained)");
  cmd->add_option("--out", o->out, "output JSON file")->type_name("FILE.json")->required();
  cmd->add_option("--csv", o->csv, "also write steps.csv, states.csv, by_position.csv here")->type_name("DIR");
  cmd->add_flag("--force", o->force, "replace an existing --out file and --csv directory");

  return std::function<int()>([o, &global]() {
    // What analyze reads, which its outputs may not overlap.
    const std::vector<CommandInput> inputs = analysis_inputs(o->run, {{"--meta", o->meta}});
    check_output(o->out, OutputKind::File, o->force, "--out", inputs);
    if (!o->csv.empty()) check_output(o->csv, OutputKind::Directory, o->force, "--csv", inputs);
    set_threads(global.threads);
    AnalysisRun run = load_analysis_run(o->run);
    LoadedCheckpoint& ck = run.ck;
    const RunConfig& cfg = ck.config;
    const AnalysisConfig& opts = cfg.analysis;
    check_size("analyze", opts.freq_bins, kMaxFreqBins, "--freq-bins", "analysis.freq_bins");
    check_memory_estimate(analysis_bytes(cfg.model, run.n_batches, run.batch_size, run.seq_len, opts) +
                              (o->control_untrained ? parameter_bytes(cfg.model) : 0.0),
                          "analyze --batch-size " + std::to_string(run.batch_size) + " x --seq-len " +
                              std::to_string(run.seq_len) + " (--chunk " + std::to_string(opts.chunk) +
                              "; a model of " + std::to_string(cfg.model.n_layer) + " layers, d_model " +
                              std::to_string(cfg.model.d_model) + ", vocabulary " +
                              std::to_string(cfg.model.vocab_size) + ")");

    const AnalysisBatches read = read_analysis_batches(o->run, run);
    const std::vector<Batch>& batches = read.batches;
    const std::optional<DatasetMeta> meta = find_meta(o->meta, o->run.data, cfg.data.dir);
    if (!meta) spdlog::warn("analyze: no meta.json found; frequency aggregates are left out (use --meta)");

    spdlog::info("analyze: {} (step {}), {} batch(es) of {} x {} tokens, {} granularity, {} lens", ck.path,
                 ck.state.step, batches.size(), batches[0].inputs.size(0), batches[0].inputs.size(1),
                 to_string(opts.granularity), opts.lens);
    nlohmann::json result = analyze_model(ck.model, batches, opts, meta ? &*meta : nullptr, *run.lens);
    result["checkpoint"] = ck.path;
    result["step"] = ck.state.step;
    result["source"] = read.source;
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
