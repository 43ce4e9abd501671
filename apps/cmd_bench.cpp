// `metalm bench`: benchmarks that print figures (never timed tests).
// `bench model`: forward and forward+backward throughput of two small models,
// and the cost of capturing the residual stream.

#include <cstdio>
#include <memory>

#include "bench.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/parameter_count.hpp"

namespace metalm::cli {

std::vector<RegisteredBench>& bench_registry() {
  static std::vector<RegisteredBench> benches;
  return benches;
}

CausalTransformer seeded_bench_model(int64_t vocab, int64_t context, int64_t d_model, int64_t n_layer,
                                     int64_t n_head, const c10::Device& device) {
  ModelConfig cfg;
  cfg.vocab_size = vocab;
  cfg.context = context;
  cfg.d_model = d_model;
  cfg.n_layer = n_layer;
  cfg.n_head = n_head;
  torch::manual_seed(0);
  CausalTransformer model(cfg);
  model->to(device);
  return model;
}

BenchRegistration::BenchRegistration(
    std::string name, std::string description,
    std::function<std::function<int()>(CLI::App& cmd, const GlobalOptions& global)> setup) {
  bench_registry().push_back({std::move(name), std::move(description), std::move(setup)});
}

namespace {

const Registration bench_command{"bench", [](CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("bench", "run a benchmark and print its figures");
  cmd->require_subcommand(1);
  auto runners = std::make_shared<std::vector<std::pair<CLI::App*, std::function<int()>>>>();
  for (const auto& b : bench_registry()) {
    auto* sub = cmd->add_subcommand(b.name, b.description);
    runners->emplace_back(sub, b.setup(*sub, global));
  }
  return std::function<int()>([runners]() {
    for (auto& [sub, run] : *runners)
      if (sub->parsed()) return run();
    return 2;
  });
}};

struct ModelCase {
  const char* label;
  int64_t n_layer, n_head, d_model, seq, batch;
};

// Means over interleaved runs: the variants being compared alternate within
// each round, so drifts in machine load hit them alike.
struct Timing {
  double wall = 0.0, cpu = 0.0;
  int64_t runs = 0;
  void add(Seconds s) { wall += s.wall, cpu += s.cpu, ++runs; }
  double mean() const { return runs ? wall / static_cast<double>(runs) : 0.0; }
  double cpu_mean() const { return runs ? cpu / static_cast<double>(runs) : 0.0; }
};

void print_row(const char* label, const Timing& t, double tokens_per_step, const Timing* baseline) {
  std::printf("  %-28s %9.1f ms/step %9.0f tokens/s   cpu %9.1f ms/step %9.0f tokens/cpu-s", label, 1e3 * t.mean(),
              tokens_per_step / t.mean(), 1e3 * t.cpu_mean(), tokens_per_step / t.cpu_mean());
  if (baseline != nullptr)
    std::printf("   (capture: wall %+.1f %%, cpu %+.1f %%)", 100.0 * (t.mean() / baseline->mean() - 1.0),
                100.0 * (t.cpu_mean() / baseline->cpu_mean() - 1.0));
  std::printf("\n");
}

struct ModelBenchOptions {
  int iters = 5;
  std::string only;
  std::string device = "auto", precision = "fp32";
};

int run_model_bench(const ModelBenchOptions& o, const GlobalOptions& global) {
  const int threads = set_threads(global.threads);
  const int iters = o.iters;
  const std::string& only = o.only;
  const c10::Device device = resolve_device(device_kind(o.device), "--device");
  const Precision precision = precision_kind(o.precision);
  std::printf("metalm bench model: %d intra-op thread(s) on %s, %s, %d timed iterations per figure\n", threads,
              device.str().c_str(), o.precision.c_str(), iters);
  const ModelCase cases[] = {{"a", 4, 4, 256, 256, 16}, {"b", 6, 6, 384, 256, 8}};
  for (const auto& mc : cases) {
    if (!only.empty() && only != mc.label) continue;
    CausalTransformer model = seeded_bench_model(256, mc.seq, mc.d_model, mc.n_layer, mc.n_head, device);
    const ModelConfig& cfg = model->config();
    const int64_t n_params = count_parameters(*model);
    const torch::Tensor tokens = torch::randint(cfg.vocab_size, {mc.batch, mc.seq}, torch::kLong).to(device);
    const torch::Tensor targets = torch::randint(cfg.vocab_size, {mc.batch * mc.seq}, torch::kLong).to(device);
    const double tokens_per_step = static_cast<double>(mc.batch * mc.seq);
    const CaptureRequest resid = CaptureRequest::residual_stream();

    auto fwd = [&](bool capture) {
      torch::NoGradGuard no_grad;
      Trace trace;
      const Stopwatch watch;
      const torch::Tensor logits = capture ? forward_logits(model, tokens, precision, resid, trace)
                                           : forward_logits(model, tokens, precision);
      return watch.elapsed();
    };
    auto fwd_bwd = [&](bool capture) {
      CaptureRequest keep = resid;
      keep.keep_graph = true;
      Trace trace;
      const Stopwatch watch;
      const torch::Tensor logits = capture ? forward_logits(model, tokens, precision, keep, trace)
                                           : forward_logits(model, tokens, precision);
      torch::nn::functional::cross_entropy(logits.view({-1, cfg.vocab_size}), targets).backward();
      const Seconds s = watch.elapsed();
      model->zero_grad();
      return s;
    };

    model->eval();  // no dropout anyway; eval keeps the comparison clean
    fwd(false), fwd(true), fwd_bwd(false);  // warm-up: allocator, BLAS threads
    Timing f_none, f_cap, fb_none, fb_cap;
    for (int i = 0; i < iters; ++i) {
      f_none.add(fwd(false));
      f_cap.add(fwd(true));
      fb_none.add(fwd_bwd(false));
      fb_cap.add(fwd_bwd(true));
    }
    std::printf("\n(%s) vocab 256, %lld layers, %lld heads, d %lld, T %lld, B %lld: %.2fM parameters\n", mc.label,
                static_cast<long long>(mc.n_layer), static_cast<long long>(mc.n_head),
                static_cast<long long>(mc.d_model), static_cast<long long>(mc.seq),
                static_cast<long long>(mc.batch), static_cast<double>(n_params) / 1e6);
    print_row("forward (no grad)", f_none, tokens_per_step, nullptr);
    print_row("forward + capture resid", f_cap, tokens_per_step, &f_none);
    print_row("forward+backward", fb_none, tokens_per_step, nullptr);
    print_row("forward+backward + capture", fb_cap, tokens_per_step, &fb_none);
  }
  return 0;
}

const BenchRegistration model_bench{
    "model", "forward and forward+backward tokens/s of two small models; cost of residual-stream capture",
    [](CLI::App& cmd, const GlobalOptions& global) {
      auto o = std::make_shared<ModelBenchOptions>();
      cmd.add_option("--iters", o->iters, "timed iterations per figure")->type_name("N")->check(int_range(1, 1 << 20))
          ->capture_default_str();
      cmd.add_option("--only", o->only, "run only model a (4 layers, d 256) or b (6 layers, d 384)")
          ->type_name("a|b")
          ->check(CLI::IsMember({"a", "b"}));
      add_device_option(cmd, o->device);
      add_precision_option(cmd, o->precision);
      return std::function<int()>([o, &global]() { return run_model_bench(*o, global); });
    }};

}  // namespace
}  // namespace metalm::cli
