// `metalm bench`: benchmarks that print figures (never timed tests).
// `bench model`: forward and forward+backward throughput of two small models,
// and the cost of capturing the residual stream.
#include <chrono>
#include <cstdio>
#include <memory>

#include "bench.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/model/causal_transformer.hpp"

namespace metalm::cli {

std::vector<RegisteredBench>& bench_registry() {
  static std::vector<RegisteredBench> benches;
  return benches;
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

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct ModelCase {
  const char* label;
  int64_t n_layer, n_head, d_model, seq, batch;
};

// Median-free but interleaved: the variants being compared alternate within
// each round, so drifts in machine load hit them alike.
struct Timing {
  double total = 0.0;
  int64_t runs = 0;
  double mean() const { return runs ? total / static_cast<double>(runs) : 0.0; }
};

int run_model_bench(int iters, const std::string& only, const GlobalOptions& global) {
  const int threads = set_threads(global.threads);
  std::printf("metalm bench model: %d intra-op thread(s), %d timed iterations per figure\n", threads, iters);
  const ModelCase cases[] = {{"a", 4, 4, 256, 256, 16}, {"b", 6, 6, 384, 256, 8}};
  for (const auto& mc : cases) {
    if (!only.empty() && only != mc.label) continue;
    ModelConfig cfg;
    cfg.vocab_size = 256;
    cfg.context = mc.seq;
    cfg.d_model = mc.d_model;
    cfg.n_layer = mc.n_layer;
    cfg.n_head = mc.n_head;
    torch::manual_seed(0);
    CausalTransformer model(cfg);
    int64_t n_params = 0;
    for (const auto& p : model->parameters()) n_params += p.numel();
    const torch::Tensor tokens = torch::randint(cfg.vocab_size, {mc.batch, mc.seq}, torch::kLong);
    const torch::Tensor targets = torch::randint(cfg.vocab_size, {mc.batch * mc.seq}, torch::kLong);
    const double tokens_per_step = static_cast<double>(mc.batch * mc.seq);
    const CaptureRequest resid = CaptureRequest::residual_stream();

    auto fwd = [&](bool capture) {
      torch::NoGradGuard no_grad;
      Trace trace;
      const auto t0 = Clock::now();
      torch::Tensor logits = capture ? model->forward(tokens, resid, trace) : model->forward(tokens);
      return seconds_since(t0);
    };
    auto fwd_bwd = [&](bool capture) {
      CaptureRequest keep = resid;
      keep.keep_graph = true;
      Trace trace;
      const auto t0 = Clock::now();
      torch::Tensor logits = capture ? model->forward(tokens, keep, trace) : model->forward(tokens);
      torch::nn::functional::cross_entropy(logits.view({-1, cfg.vocab_size}), targets).backward();
      const double s = seconds_since(t0);
      model->zero_grad();
      return s;
    };

    model->eval();  // no dropout anyway; eval keeps the comparison clean
    fwd(false), fwd(true), fwd_bwd(false);  // warm-up: allocator, BLAS threads
    Timing f_none, f_cap, fb_none, fb_cap;
    for (int i = 0; i < iters; ++i) {
      f_none.total += fwd(false), f_none.runs++;
      f_cap.total += fwd(true), f_cap.runs++;
      fb_none.total += fwd_bwd(false), fb_none.runs++;
      fb_cap.total += fwd_bwd(true), fb_cap.runs++;
    }
    std::printf("\n(%s) vocab 256, %lld layers, %lld heads, d %lld, T %lld, B %lld: %.2fM parameters\n", mc.label,
                static_cast<long long>(mc.n_layer), static_cast<long long>(mc.n_head),
                static_cast<long long>(mc.d_model), static_cast<long long>(mc.seq),
                static_cast<long long>(mc.batch), static_cast<double>(n_params) / 1e6);
    std::printf("  forward (no grad)            %8.1f ms/step %10.0f tokens/s\n", 1e3 * f_none.mean(),
                tokens_per_step / f_none.mean());
    std::printf("  forward + capture resid      %8.1f ms/step %10.0f tokens/s  (%+.1f %%)\n", 1e3 * f_cap.mean(),
                tokens_per_step / f_cap.mean(), 100.0 * (f_cap.mean() / f_none.mean() - 1.0));
    std::printf("  forward+backward             %8.1f ms/step %10.0f tokens/s\n", 1e3 * fb_none.mean(),
                tokens_per_step / fb_none.mean());
    std::printf("  forward+backward + capture   %8.1f ms/step %10.0f tokens/s  (%+.1f %%, keep_graph)\n",
                1e3 * fb_cap.mean(), tokens_per_step / fb_cap.mean(),
                100.0 * (fb_cap.mean() / fb_none.mean() - 1.0));
  }
  return 0;
}

const BenchRegistration model_bench{
    "model", "forward and forward+backward tokens/s of two small models; cost of residual-stream capture",
    [](CLI::App& cmd, const GlobalOptions& global) {
      auto iters = std::make_shared<int>(5);
      auto only = std::make_shared<std::string>();
      cmd.add_option("--iters", *iters, "timed iterations per figure")->type_name("N")->check(CLI::PositiveNumber)
          ->capture_default_str();
      cmd.add_option("--only", *only, "run only model a (4 layers, d 256) or b (6 layers, d 384)")
          ->type_name("a|b")
          ->check(CLI::IsMember({"a", "b"}));
      return std::function<int()>([iters, only, &global]() { return run_model_bench(*iters, *only, global); });
    }};

}  // namespace
}  // namespace metalm::cli
