// `metalm train`: trains a model from a config into a run directory, or
// resumes the newest checkpoint of one.
#include <spdlog/spdlog.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "command.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/train/trainer.hpp"

namespace metalm::cli {
namespace {

const Registration train_command{"train", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string config;
    std::vector<std::string> overrides;
    std::string run_dir;
    bool resume = false;
    // --dist-* flags given, keyed by the torchrun variable each stands for.
    std::map<std::string, std::string> launch;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("train", "train a model (metrics, evaluations and checkpoints in a run directory)");
  add_config_options(*cmd, o->config, o->overrides, false);
  cmd->add_option("--run-dir", o->run_dir, "run directory (default: runs/<config name>)")->type_name("DIR");
  cmd->add_flag("--resume", o->resume,
                "continue from the newest checkpoint of the run directory (config: --config, else RUN_DIR/config.json)");

  // torchrun's environment variables, as flags (a flag wins over its variable).
  const auto flag = [&](const char* name, const char* variable, const char* doc, const char* type) {
    return cmd->add_option_function<std::string>(
        name, [o, variable](const std::string& v) { o->launch[variable] = v; }, doc)->type_name(type);
  };
  flag("--dist-rank", "RANK", "this process's rank (default: $RANK, else 0)", "N")->check(CLI::NonNegativeNumber);
  flag("--dist-world-size", "WORLD_SIZE", "number of ranks (default: $WORLD_SIZE, else 1)", "N")
      ->check(CLI::PositiveNumber);
  flag("--dist-local-rank", "LOCAL_RANK", "rank on this machine (default: $LOCAL_RANK, else rank)", "N")
      ->check(CLI::NonNegativeNumber);
  flag("--dist-master-addr", "MASTER_ADDR", "address of rank 0 (default: $MASTER_ADDR)", "HOST");
  flag("--dist-master-port", "MASTER_PORT", "port rank 0 listens on (default: $MASTER_PORT)", "PORT")
      ->check(CLI::PositiveNumber);

  return std::function<int()>([o, &global]() {
    std::string config_path = o->config;
    if (config_path.empty()) {
      const std::string saved = o->run_dir.empty() ? "" : (std::filesystem::path(o->run_dir) / "config.json").string();
      if (!o->resume || saved.empty() || !std::filesystem::exists(saved))
        throw ConfigError("train needs --config FILE (or --resume --run-dir DIR of a run with a config.json)");
      config_path = saved;
    }
    const RunConfig config = load_run_config(config_path, o->overrides);
    // Sizes off by orders of magnitude fail here, naming the keys, before a
    // run directory or a model exists.
    check_memory_estimate(training_bytes(config),
                          "train: model.n_layer " + std::to_string(config.model.n_layer) + ", model.d_model " +
                              std::to_string(config.model.d_model) + ", model.vocab_size " +
                              std::to_string(config.model.vocab_size) + ", train.batch_size " +
                              std::to_string(config.train.batch_size) + " x train.seq_len " +
                              std::to_string(config.train.seq_len));
    TrainerOptions options;
    options.run_dir = o->run_dir.empty() ? "runs/" + config.name : o->run_dir;
    options.resume = o->resume;
    options.threads = global.threads;
    options.launch = dist_launch_from_env(o->launch);
    if (options.launch.distributed()) {
      // One progress stream: the other ranks report only warnings and errors.
      spdlog::set_pattern(fmt::format("[%H:%M:%S] [rank {}] %^%l%$ %v", options.launch.rank));
      if (options.launch.rank > 0 && spdlog::get_level() == spdlog::level::info)
        spdlog::set_level(spdlog::level::warn);
    }
    Trainer trainer(config, options);
    const TrainSummary s = trainer.run();
    if (s.already_complete) {
      const std::string best = s.best_step >= 0 ? fmt::format(" (best {:.4f} at step {})", s.best_val_loss, s.best_step)
                                                : std::string();
      const std::string val = std::isnan(s.last_val_loss) ? std::string("no evaluation recorded at that step")
                                                          : fmt::format("val loss {:.4f}", s.last_val_loss);
      spdlog::info("run {} is already complete: step {} of train.steps = {} | {}{}; nothing to train (raise "
                   "train.steps with --set train.steps=N to continue it)",
                   options.run_dir, s.end_step, config.train.steps, val, best);
      return 0;
    }
    spdlog::info("done: step {} | val loss {:.4f} (best {:.4f}) | {:.0f} tok/s | {}", s.end_step, s.last_val_loss,
                 s.best_val_loss, s.tokens_per_s, options.run_dir);
    if (options.launch.distributed())
      spdlog::info("gradient allreduce: {:.2f} ms per step ({} ranks)", 1000.0 * s.allreduce_s_per_step,
                   options.launch.world_size);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
