// `metalm bench train`: training throughput of a config (the whole update:
// forward, backward, clipping, AdamW) in a throw-away run directory.
#include <ATen/Parallel.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "bench.hpp"
#include "metalm/config/json.hpp"
#include "metalm/model/parameter_count.hpp"
#include "metalm/train/trainer.hpp"

namespace metalm::cli {
namespace {

int run_train_bench(const std::string& config_path, const std::vector<std::string>& sets, int64_t steps,
                    const GlobalOptions& global) {
  std::vector<std::string> overrides = sets;
  // Only the updates are timed; evaluation, analysis and checkpoints are off
  // (the trainer still evaluates and checkpoints once at the end).
  for (const char* s : {"train.eval_every=0", "train.ckpt_every=0", "analysis.every=0", "train.save_steps=[]"})
    overrides.emplace_back(s);
  overrides.push_back("train.steps=" + std::to_string(steps));
  overrides.push_back("train.log_every=" + std::to_string(steps));
  overrides.push_back("train.warmup_steps=0");
  const RunConfig cfg = load_run_config(config_path, overrides);

  std::string tmpl = (std::filesystem::temp_directory_path() / "metalm-bench-train-XXXXXX").string();
  const std::string dir = ::mkdtemp(tmpl.data());
  TrainerOptions options;
  options.run_dir = dir;
  options.threads = global.threads;
  int64_t n_params = 0;
  TrainSummary s;
  try {
    Trainer trainer(cfg, options);
    n_params = count_parameters(*trainer.model());
    s = trainer.run();
  } catch (...) {
    std::filesystem::remove_all(dir);
    throw;
  }
  std::filesystem::remove_all(dir);
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const int64_t tokens_per_step = cfg.train.batch_size * cfg.train.seq_len * cfg.train.grad_accum;
  const nlohmann::json out = {{"config", cfg.name},
                              {"parameters", n_params},
                              {"threads", at::get_num_threads()},
                              {"omp_wait_policy", policy ? policy : ""},
                              {"steps", steps},
                              {"tokens_per_step", tokens_per_step},
                              {"tokens_per_s", s.tokens_per_s},
                              {"ms_per_step", 1e3 * static_cast<double>(tokens_per_step) / s.tokens_per_s}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

const BenchRegistration train_bench{
    "train", "training tokens/s of a config (forward, backward, clip, AdamW), e.g. configs/brown-byte-small.json",
    [](CLI::App& cmd, const GlobalOptions& global) {
      struct Options {
        std::string config;
        std::vector<std::string> sets;
        int64_t steps = 30;
      };
      auto o = std::make_shared<Options>();
      add_config_options(cmd, o->config, o->sets, true);
      cmd.add_option("--steps", o->steps, "timed optimizer steps")->type_name("N")->check(CLI::PositiveNumber)
          ->capture_default_str();
      return std::function<int()>(
          [o, &global]() { return run_train_bench(o->config, o->sets, o->steps, global); });
    }};

}  // namespace
}  // namespace metalm::cli
