// `metalm bench analysis`: the cost of the inner-optimization analysis of a
// batch relative to one training step on the same tokens (goal: at most 3x
// at block granularity), and the peak memory of the analysis.
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "bench.hpp"
#include "metalm/analysis/analyze_model.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/model/device.hpp"
#include "metalm/train/optimizer.hpp"

namespace metalm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Peak resident set size of the process (VmHWM) in MiB.
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == "VmHWM:") {
      double kb = 0;
      in >> kb;
      return kb / 1024.0;
    }
    std::getline(in, key);
  }
  return -1.0;
}
struct Settings {
  int64_t layers = 4, heads = 4, d_model = 256, vocab = 256, seq = 256, batch = 16;
  int iters = 3;
  std::string granularity = "block";
  std::string lens = "logit";  // or "tuned": identity translators (the cost of any tuned lens)
  std::string device = "auto", precision = "fp32";  // of the model and of its training step
};

int run(const Settings& s, const GlobalOptions& global) {
  const int threads = set_threads(global.threads);
  const c10::Device device = resolve_device(device_kind(s.device), "--device");
  const Precision precision = precision_kind(s.precision);
  {
    ModelConfig m;
    m.vocab_size = s.vocab;
    m.context = s.seq;
    m.d_model = s.d_model;
    m.n_layer = s.layers;
    m.n_head = s.heads;
    AnalysisConfig a;
    a.granularity = s.granularity == "sublayer" ? Granularity::Sublayer : Granularity::Block;
    check_memory_estimate(4 * parameter_bytes(m) + activation_bytes(m, s.batch, s.seq) +
                              analysis_bytes(m, 1, s.batch, s.seq, a),
                          "bench analysis --layers " + std::to_string(s.layers) + ", --d-model " +
                              std::to_string(s.d_model) + ", --vocab " + std::to_string(s.vocab) + ", --batch " +
                              std::to_string(s.batch) + " x --seq " + std::to_string(s.seq));
  }
  CausalTransformer model = seeded_bench_model(s.vocab, s.seq, s.d_model, s.layers, s.heads, device);
  const ModelConfig& cfg = model->config();
  const at::Tensor tokens = torch::randint(cfg.vocab_size, {s.batch, s.seq + 1}, torch::kLong).to(device);
  const Batch batch{tokens.narrow(1, 0, s.seq).contiguous(), tokens.narrow(1, 1, s.seq).contiguous()};
  TrainConfig tc;
  tc.lr = 1e-4;
  const auto opt = make_optimizer(model, tc);
  AnalysisConfig ao;
  ao.granularity = s.granularity == "sublayer" ? Granularity::Sublayer : Granularity::Block;

  auto train_step = [&] {
    model->train();
    const auto t0 = Clock::now();
    opt->zero_grad();
    const at::Tensor logits = forward_logits(model, batch.inputs, precision);
    at::cross_entropy_loss(logits.reshape({-1, cfg.vocab_size}), batch.targets.reshape({-1})).backward();
    opt->clip(opt->grad_norm(), 1.0);
    opt->step();
    return seconds_since(t0);
  };
  // A tuned lens costs the same whatever its values: identity translators.
  const std::shared_ptr<const Lens> lens =
      s.lens == "tuned" ? tuned_lens(TunedLens::identity(cfg.n_layer, cfg.d_model), "tuned:identity") : logit_lens();
  auto analysis = [&] {
    const auto t0 = Clock::now();
    model->eval();  // what analyze_model does, with the lens passed in
    const std::vector<BatchAnalysis> done{analyze_batch(model, batch, 0, ao, *lens)};
    const nlohmann::json j = summarize_analysis(model, {batch}, done, ao, nullptr, lens->name());
    return seconds_since(t0);
  };
  // The two parts of the analysis: capture forward, then the analyser proper.
  auto parts = [&](double& capture, double& analyse) {
    model->eval();
    auto t0 = Clock::now();
    const ModelTrajectory mt = capture_trajectory(model, batch.inputs, ao.granularity);
    capture += seconds_since(t0);
    const LensObjective logit = make_lens_objective(model, batch.targets);
    t0 = Clock::now();
    // A tuned lens maps the states first (docs/design.md 5.2), part of its cost.
    analyze_trajectory(lens->translate(mt.states, mt.names), mt.names, logit, ao, batch.inputs);
    analyse += seconds_since(t0);
  };

  // Memory first, in a process that has not trained yet (the allocator keeps
  // what a training step used, which would hide the analysis' own peak).
  const double base = peak_rss_mib();
  analysis();
  const double peak = peak_rss_mib();
  train_step(), analysis();  // warm-up: allocator, BLAS threads
  double t_train = 0, t_analysis = 0, t_capture = 0, t_analyse = 0;
  for (int i = 0; i < s.iters; ++i) {
    t_train += train_step();
    t_analysis += analysis();
    parts(t_capture, t_analyse);
  }
  const double n = s.iters;
  std::printf("metalm bench analysis: %d intra-op thread(s) on %s, %d timed iterations\n", threads,
              device.str().c_str(), s.iters);
  std::printf("model: %lld layers, %lld heads, d %lld, vocab %lld; batch %lld x %lld tokens; %s granularity; %s lens\n",
              static_cast<long long>(s.layers), static_cast<long long>(s.heads), static_cast<long long>(s.d_model),
              static_cast<long long>(s.vocab), static_cast<long long>(s.batch), static_cast<long long>(s.seq),
              s.granularity.c_str(), s.lens.c_str());
  std::printf("  training step (fwd+bwd+AdamW)   %8.1f ms in %s\n", 1e3 * t_train / n, s.precision.c_str());
  std::printf("  analysis of the batch           %8.1f ms   = %.2f x a training step\n", 1e3 * t_analysis / n,
              t_analysis / t_train);
  std::printf("    capture forward               %8.1f ms\n", 1e3 * t_capture / n);
  std::printf("    analyser (lens grads, control)%8.1f ms\n", 1e3 * t_analyse / n);
  std::printf("    aggregation and JSON          %8.1f ms\n", 1e3 * (t_analysis - t_capture - t_analyse) / n);
  std::printf("  peak RSS of the first analysis  %8.1f MiB (before it: %.1f MiB; +%.1f MiB)\n", peak, base,
              peak - base);
  return 0;
}

const BenchRegistration analysis_bench{
    "analysis", "cost of analysing a batch vs one training step on the same tokens; peak memory",
    [](CLI::App& cmd, const GlobalOptions& global) {
      auto s = std::make_shared<Settings>();
      cmd.add_option("--layers", s->layers, "blocks")->type_name("L")->check(int_range(1, 1 << 16))->capture_default_str();
      cmd.add_option("--heads", s->heads, "attention heads")->type_name("H")->check(int_range(1, 1 << 16))->capture_default_str();
      cmd.add_option("--d-model", s->d_model, "residual width")->type_name("D")->check(int_range(1, 1 << 16))->capture_default_str();
      cmd.add_option("--vocab", s->vocab, "vocabulary size")->type_name("V")->check(int_range(2, 1 << 20))->capture_default_str();
      cmd.add_option("--seq", s->seq, "tokens per sequence")->type_name("T")->check(int_range(1, kMaxTokens))->capture_default_str();
      cmd.add_option("--batch", s->batch, "sequences")->type_name("B")->check(int_range(1, kMaxBatch))->capture_default_str();
      cmd.add_option("--iters", s->iters, "timed iterations")->type_name("N")->check(int_range(1, 1 << 20))->capture_default_str();
      cmd.add_option("--granularity", s->granularity, "block | sublayer")->type_name("G")
          ->check(CLI::IsMember({"block", "sublayer"}))->capture_default_str();
      cmd.add_option("--lens", s->lens, "logit | tuned (identity translators: a tuned lens's cost)")->type_name("L")
          ->check(CLI::IsMember({"logit", "tuned"}))->capture_default_str();
      add_device_option(cmd, s->device);
      add_precision_option(cmd, s->precision);
      return std::function<int()>([s, &global]() { return run(*s, global); });
    }};

}  // namespace
}  // namespace metalm::cli
