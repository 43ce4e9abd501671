// `metalm bench train`: training throughput of a config (the whole update:
// forward, backward, clipping, AdamW) in a throw-away run directory.
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <set>
#include <memory>

#include "bench.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/model/parameter_count.hpp"
#include "metalm/model/runtime.hpp"
#include "metalm/train/trainer.hpp"

namespace metalm::cli {
namespace {

namespace prof = torch::autograd::profiler;

void start_profiler() {
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO,
                                                     /*report_input_shapes=*/true);
  const std::set<torch::profiler::impl::ActivityType> activities{torch::profiler::impl::ActivityType::CPU};
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
}

// Writes the chrome://tracing file and prints, on stderr, the ops that took
// the most time of their own (their time minus that of the ops they called),
// grouped by name and input shapes, per training step.
void stop_profiler(int64_t steps) {
  std::unique_ptr<prof::ProfilerResult> result = prof::disableProfiler();
  struct Span {
    uint64_t begin, end;
    std::string key;
  };
  std::map<uint64_t, std::vector<Span>> by_thread;
  for (const auto& e : result->events()) {
    std::string key = e.name();
    if (e.hasShapes())
      for (const auto& shape : e.shapes()) {
        key += " [";
        for (size_t i = 0; i < shape.size(); ++i) key += (i ? "," : "") + std::to_string(shape[i]);
        key += "]";
      }
    by_thread[e.startThreadId()].push_back({e.startUs(), e.startUs() + e.durationUs(), key});
  }
  std::map<std::string, std::pair<double, int64_t>> self;  // key -> (self us, calls)
  double total = 0;
  for (auto& [tid, spans] : by_thread) {
    std::sort(spans.begin(), spans.end(),
              [](const Span& a, const Span& b) { return a.begin != b.begin ? a.begin < b.begin : a.end > b.end; });
    std::vector<std::pair<const Span*, double>> stack;  // open spans and their children's time
    auto close = [&](uint64_t until) {
      while (!stack.empty() && stack.back().first->end <= until) {
        const Span* sp = stack.back().first;
        const double own = static_cast<double>(sp->end - sp->begin) - stack.back().second;
        stack.pop_back();
        if (!stack.empty()) stack.back().second += static_cast<double>(sp->end - sp->begin);
        self[sp->key].first += own;
        self[sp->key].second += 1;
        total += own;
      }
    };
    for (const Span& sp : spans) {
      close(sp.begin);
      stack.emplace_back(&sp, 0.0);
    }
    close(std::numeric_limits<uint64_t>::max());
  }
  std::vector<std::pair<std::string, std::pair<double, int64_t>>> rows(self.begin(), self.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  const double per = 1e3 * static_cast<double>(steps);
  std::fprintf(stderr, "profile: %.1f ms of op time per step (all %lld steps, evaluation and checkpoint included)\n",
               total / per, static_cast<long long>(steps));
  for (size_t i = 0; i < rows.size() && i < 30; ++i)
    std::fprintf(stderr, "%8.2f ms/step %5.1f%% %7.1f calls/step  %s\n", rows[i].second.first / per,
                 100.0 * rows[i].second.first / total, static_cast<double>(rows[i].second.second) / static_cast<double>(steps),
                 rows[i].first.substr(0, 140).c_str());
  // No trace file: writing one (result->save) needs a libtorch built with
  // Kineto, which Debian's is not.
}

struct TrainBenchOptions {
  std::string config;
  std::vector<std::string> sets;
  int64_t steps = 30;
  int64_t warmup = 2;             // untimed updates first
  std::string precision, device;  // "" keeps the config's
  bool profile = false;           // print the ops by self time
};

int run_train_bench(const TrainBenchOptions& o, const GlobalOptions& global) {
  const int64_t steps = o.steps;
  std::vector<std::string> overrides = o.sets;
  if (!o.precision.empty()) overrides.push_back("train.precision=" + o.precision);
  if (!o.device.empty()) overrides.push_back("train.device=" + o.device);
  // Only the updates are timed; evaluation, analysis and checkpoints are off
  // (the trainer still evaluates and checkpoints once at the end).
  for (const char* s : {"train.eval_every=0", "train.ckpt_every=0", "analysis.every=0", "train.save_steps=[]"})
    overrides.emplace_back(s);
  overrides.push_back("train.steps=" + std::to_string(o.warmup + steps));
  overrides.push_back("train.log_every=" + std::to_string(o.warmup + steps));
  overrides.push_back("train.warmup_steps=0");
  const RunConfig cfg = load_run_config(o.config, overrides);
  check_memory_estimate(training_bytes(cfg), "bench train: train.batch_size " + std::to_string(cfg.train.batch_size) +
                                                 " x train.seq_len " + std::to_string(cfg.train.seq_len) +
                                                 " of the config's model");

  std::string tmpl = (std::filesystem::temp_directory_path() / "metalm-bench-train-XXXXXX").string();
  const std::string dir = ::mkdtemp(tmpl.data());
  TrainerOptions options;
  options.run_dir = dir;
  options.threads = global.threads;
  int64_t n_params = 0;
  std::string precision;
  TrainSummary s;
  try {
    Trainer trainer(cfg, options);
    n_params = count_parameters(*trainer.model());
    precision = to_string(trainer.config().train.precision);  // auto resolved
    if (o.profile) start_profiler();
    s = trainer.run();
    if (o.profile) stop_profiler(o.warmup + steps);
  } catch (...) {
    std::filesystem::remove_all(dir);
    throw;
  }
  std::filesystem::remove_all(dir);
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const int64_t tokens_per_step = cfg.train.tokens_per_step();
  // The first `warmup` updates (allocator, autocast and oneDNN caches) are
  // not timed.
  std::vector<double> timed(s.step_seconds.begin() + std::min<int64_t>(o.warmup, s.step_seconds.size()),
                            s.step_seconds.end());
  double total = 0;
  for (double t : timed) total += t;
  const double ms_per_step = timed.empty() ? 0.0 : 1e3 * total / static_cast<double>(timed.size());
  std::sort(timed.begin(), timed.end());
  const double ms_median = timed.empty() ? 0.0 : 1e3 * timed[timed.size() / 2];
  const nlohmann::json out = {{"config", cfg.name},
                              {"parameters", n_params},
                              {"threads", at::get_num_threads()},
                              {"precision", precision},
                              {"omp_wait_policy", policy ? policy : ""},
                              {"steps", steps},
                              {"tokens_per_step", tokens_per_step},
                              {"tokens_per_s", 1e3 * static_cast<double>(tokens_per_step) / ms_per_step},
                              {"ms_per_step", ms_per_step},
                              {"ms_per_step_median", ms_median},
                              {"runtime", to_json(runtime_kernels())}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

const BenchRegistration train_bench{
    "train", "training tokens/s of a config (forward, backward, clip, AdamW), e.g. configs/brown-byte-small.json",
    [](CLI::App& cmd, const GlobalOptions& global) {
      auto o = std::make_shared<TrainBenchOptions>();
      add_config_options(cmd, o->config, o->sets, true);
      cmd.add_option("--steps", o->steps, "timed optimizer steps")->type_name("N")->check(int_range(1, 1 << 20))
          ->capture_default_str();
      cmd.add_option("--warmup", o->warmup, "untimed optimizer steps before the timed ones")
          ->type_name("N")
          ->check(int_range(0, 1 << 20))
          ->capture_default_str();
      cmd.add_option("--precision", o->precision, "fp32 | bf16 | auto (default: the config's train.precision)")
          ->type_name("P")
          ->check(CLI::IsMember({"fp32", "bf16", "auto"}));
      cmd.add_option("--device", o->device, "auto | cpu | cuda (default: the config's train.device)")
          ->type_name("D")
          ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
      cmd.add_flag("--profile", o->profile,
                   "profile the run: print the 30 ops (by name and input shapes) with the most self time to stderr");
      return std::function<int()>([o, &global]() { return run_train_bench(*o, global); });
    }};

}  // namespace
}  // namespace metalm::cli
