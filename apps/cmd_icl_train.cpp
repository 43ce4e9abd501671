// `metalm icl-train`: trains a linear or softmax self-attention model on
// in-context linear regression (docs/design.md section 8) into a run directory.
#include <spdlog/spdlog.h>

#include <filesystem>

#include "command.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/icl/train.hpp"

namespace metalm::cli {
namespace {

const Registration icl_train_command{"icl-train", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string config, run_dir;
    bool resume = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("icl-train", "train attention layers on in-context linear regression (configs/icl/)");
  cmd->add_option("--config", o->config, "ICL config JSON (sections task, model, train)")->type_name("FILE");
  cmd->add_option("--run-dir", o->run_dir, "run directory")->type_name("DIR")->required();
  cmd->add_flag("--resume", o->resume,
                "continue from the newest checkpoint of the run directory (config: --config, else RUN_DIR/config.json)");

  return std::function<int()>([o, &global]() {
    std::string path = o->config;
    if (path.empty()) {
      const std::string saved = (std::filesystem::path(o->run_dir) / "config.json").string();
      if (!o->resume || !std::filesystem::exists(saved))
        throw ConfigError("icl-train needs --config FILE (or --resume with a --run-dir that has a config.json)");
      path = saved;
    }
    const icl::IclConfig config = icl::load_icl_config(path);
    set_threads(global.threads);
    const icl::TrainOutcome r = icl::train_icl(config, o->run_dir, o->resume);
    spdlog::info("done: step {} | held-out loss {:.5f} | {:.1f} s | {}", r.steps, r.eval_loss, r.elapsed_s, o->run_dir);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
