// `metalm icl-compare`: a model trained by icl-train against the reference
// algorithms on held-out tasks, with the inner-optimization analysis of its
// layers (docs/design.md 8.4-8.5; the JSON in section 7).
#include <spdlog/spdlog.h>

#include <cmath>

#include "command.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/icl/compare.hpp"
#include "metalm/icl/train.hpp"

namespace metalm::cli {
namespace {

double num(const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

const Registration icl_compare_command{"icl-compare", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string checkpoint, out;
    icl::CompareOptions compare;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("icl-compare", "compare a model of icl-train with GD, GD++, preconditioned GD and ridge");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory, or a run directory (its newest checkpoint)")
      ->type_name("DIR")->required();
  cmd->add_option("--out", o->out, "output JSON file (must not exist, unless --force)")->type_name("FILE")->required();
  cmd->add_option("--tasks", o->compare.tasks, "held-out test tasks")->type_name("N")
      ->check(int_range(2, kMaxBatches))->capture_default_str();
  cmd->add_option("--tune-tasks", o->compare.tune_tasks, "held-out tasks the references' step sizes are tuned on")
      ->type_name("N")->check(int_range(2, kMaxBatches))->capture_default_str();
  cmd->add_option("--context-sizes", o->compare.context_sizes,
                  "context sizes N of the loss-vs-N curve, comma-separated (default: the training N times "
                  "0.2, 0.5, 1, 2, 4, 8)")
      ->type_name("N,N,...")->delimiter(',');
  cmd->add_flag("--force", o->force, "replace an existing --out file");

  return std::function<int()>([o, &global]() {
    check_output(o->out, OutputKind::File, o->force, "--out", {{"--checkpoint", o->checkpoint}});
    set_threads(global.threads);
    icl::IclCheckpoint ckpt = icl::load_icl_checkpoint(o->checkpoint);
    nlohmann::json result = icl::compare_with_references(*ckpt.model, ckpt.config, o->compare);
    result["checkpoint"] = ckpt.path;
    result["step"] = ckpt.step;
    result["config"] = icl::to_json(ckpt.config);
    spdlog::info("model: loss {:.4f} (predicting 0: {:.4f})", num(result["model"]["loss"]),
                 num(result["model"]["loss_zero"]));
    for (const auto& r : result["references"])
      spdlog::info("{:<18} loss {:.4f} | prediction cos {:.4f} | sensitivity cos {:.4f} | diff {:.4g}",
                   r["name"].get<std::string>(), num(r["loss"]), num(r["prediction_cosine"]),
                   num(r["sensitivity_cosine"]), num(r["prediction_difference"]));
    for (const auto& s : result["analysis"]["steps"])
      spdlog::info("layer {}: alignment {:.4f}, step size {:.4f} (pooled {:.4f}), preconditioned alignment {:.4f} vs {:.4f}",
                   s["layer"].get<int64_t>(), num(s["alignment"]["mean"]), num(s["step_size"]["mean"]),
                   num(s["step_size_pooled"]), num(s["alignment_preconditioned"]["mean"]),
                   num(s["alignment_context_gradient"]["mean"]));
    const auto& curve = result["loss_vs_n"];
    for (size_t k = 0; k < curve["n"].size(); ++k)
      spdlog::info("N = {:<6} model loss {:.4f} | gd1 {:.4f}", curve["n"][k].get<int64_t>(), num(curve["model"][k]),
                   num(curve["references"]["gd1"][k]));
    write_json_file(o->out, result);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
