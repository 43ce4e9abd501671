// `metalm intervene`: the causal tests of the inner optimization
// (docs/design.md 5.8) on a checkpoint and a token file or a list of ids,
// beside the untrained model's same tests, written as one JSON
// ("format": "metalm-intervene", docs/design.md 7).
#include <spdlog/spdlog.h>

#include <cmath>

#include "analysis_options.hpp"
#include "metalm/analysis/intervene.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/train/checkpoint.hpp"

namespace metalm::cli {
namespace {

// A JSON number, or NaN for null.
double num(const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

void log_steps(const nlohmann::json& r, const char* title) {
  spdlog::info("intervene: {} (loss change in nats, edited - unedited; final loss {:.4f})", title, num(r["final_loss"]));
  for (const auto& st : r["steps"])
    spdlog::info("  {:>22} -> {:<22} -grad {:+.4f}  -random {:+.4f}  -radial {:+.4f}  grad step {:+.4f}  "
                 "alpha_min {}",
                 st["from"].get<std::string>(), st["to"].get<std::string>(), num(st["remove_gradient"]["mean"]),
                 num(st["remove_random"]["mean"]), num(st["remove_radial"]["mean"]), num(st["gradient_step"]["mean"]),
                 st["alpha_min"].dump());
}

const Registration intervene_command{"intervene", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    AnalysisRunOptions run{"intervene"};
    std::string out, alphas = "0,0.5,1,1.5,2";
    int64_t resamples = 1000;
    bool no_control = false, force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "intervene", "edit each layer's update (remove its gradient, random or radial part, rescale it, replace it by a "
                   "gradient step) and measure the model's loss");
  add_analysis_run_options(*cmd, o->run, /*with_text=*/false, "seed of the random directions and the bootstrap",
                           "logit | tuned:LENS.safetensors: the gradient removed and stepped along");
  cmd->add_option("--alphas", o->alphas, "multipliers of the line search s_k + alpha * update")
      ->type_name("A,A,...")->capture_default_str();
  cmd->add_option("--resamples", o->resamples, "bootstrap resamples over sequences for the 95% intervals")
      ->type_name("R")->check(int_range(1, 100000))->capture_default_str();
  cmd->add_flag("--no-control-untrained", o->no_control,
                "skip the untrained model's same interventions (key control_untrained)");
  cmd->add_option("--out", o->out, "output JSON file")->type_name("FILE.json")->required();
  cmd->add_flag("--force", o->force, "replace an existing --out file");

  return std::function<int()>([o, &global]() {
    check_output(o->out, OutputKind::File, o->force, "--out", analysis_inputs(o->run));
    InterveneOptions options;
    options.alphas = parse_alphas(o->alphas);
    options.resamples = o->resamples;
    check_intervene_options(options);
    set_threads(global.threads);
    AnalysisRun run = load_analysis_run(o->run);
    LoadedCheckpoint& ck = run.ck;
    const RunConfig& cfg = ck.config;
    const AnalysisConfig& opts = cfg.analysis;
    const AnalysisBatches read = read_analysis_batches(o->run, run);
    const std::vector<Batch>& batches = read.batches;

    spdlog::info("intervene: {} (step {}), {} batch(es) of {} x {} tokens, {} granularity, {} lens", ck.path,
                 ck.state.step, batches.size(), batches[0].inputs.size(0), batches[0].inputs.size(1),
                 to_string(opts.granularity), opts.lens);
    nlohmann::json result = intervene_model(ck.model, batches, opts, options, *run.lens);
    result["checkpoint"] = ck.path;
    result["step"] = ck.state.step;
    result["source"] = read.source;
    log_steps(result, "the checkpoint");
    if (!o->no_control) {
      spdlog::info("intervene: untrained control (fresh model, seed {})", cfg.train.seed);
      nlohmann::json control =
          intervene_untrained(cfg.model, static_cast<uint64_t>(cfg.train.seed), batches, opts, options);
      log_steps(control, "the untrained control (\"control_untrained\" in the output)");
      result["control_untrained"] = std::move(control);
    }
    write_json_file(o->out, result);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
