// `metalm bench intervene`: the cost of the causal tests of a batch
// (docs/design.md 5.8: every intervention of every step, each a partial
// forward pass) against one training step and against the analysis of the
// same tokens (goal: within 3x the analysis).

#include <cstdio>
#include <string>

#include "analysis_options.hpp"
#include "bench.hpp"
#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/intervene.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/model/device.hpp"
#include "metalm/train/optimizer.hpp"

namespace metalm::cli {
namespace {


struct Settings {
  int64_t layers = 4, d_model = 256, seq = 256, batch = 16, resamples = 1000, copies = 0;
  int iters = 3;
  std::string granularity = "block";
  std::string device = "auto";
  std::string alphas = "0,0.5,1,1.5,2";
};

// Wall and CPU seconds of one call of `f`, summed over calls into `total`.
template <class F>
void timed(F&& f, Seconds& total) {
  const Stopwatch watch;
  f();
  const Seconds s = watch.elapsed();
  total.wall += s.wall;
  total.cpu += s.cpu;
}

// A shape beyond the machine fails here in words, not as a crash deep inside
// an allocation: weights, gradients and AdamW's two moments (4 copies of
// about 12 L d² + 2 V d parameters) and about 16 activations of [B, T, d]
// or [B, T, V] per block, in float32.
void check_memory(const Settings& s) {
  const double L = static_cast<double>(s.layers), d = static_cast<double>(s.d_model);
  const double BT = static_cast<double>(s.batch) * static_cast<double>(s.seq);
  const double bytes = 4.0 * (4.0 * (12.0 * L * d * d + 2.0 * 256.0 * d) + 16.0 * L * BT * (d + 256.0));
  constexpr double kLimit = 32.0 * (1ull << 30);
  if (bytes > kLimit) {
    const auto gib = static_cast<int64_t>(bytes / (1ull << 30));
    throw ConfigError("bench intervene: --layers " + std::to_string(s.layers) + ", --d-model " +
                      std::to_string(s.d_model) + ", --seq " + std::to_string(s.seq) + ", --batch " +
                      std::to_string(s.batch) + " need about " + std::to_string(gib) +
                      " GiB of memory (estimated), more than the 32 GiB this benchmark allows; lower them");
  }
}

int run(const Settings& s, const GlobalOptions& global) {
  check_memory(s);
  const std::vector<double> alphas = parse_alphas(s.alphas);
  const int threads = set_threads(global.threads);
  const c10::Device device = resolve_device(device_kind(s.device), "--device");
  CausalTransformer model = seeded_bench_model(256, s.seq, s.d_model, s.layers, 4, device);
  const ModelConfig& cfg = model->config();
  const at::Tensor tokens = torch::randint(cfg.vocab_size, {s.batch, s.seq + 1}, torch::kLong).to(device);
  const std::vector<Batch> batches{{tokens.narrow(1, 0, s.seq).contiguous(), tokens.narrow(1, 1, s.seq).contiguous()}};
  TrainConfig tc;
  tc.lr = 1e-4;
  const auto opt = make_optimizer(model, tc);
  AnalysisConfig ao;
  ao.granularity = s.granularity == "sublayer" ? Granularity::Sublayer : Granularity::Block;
  InterveneOptions io;
  io.resamples = s.resamples;
  io.copies = s.copies;
  io.alphas = alphas;

  auto train_step = [&] {
    model->train();
    opt->zero_grad();
    const at::Tensor logits = forward_logits(model, batches[0].inputs, Precision::Fp32);
    at::cross_entropy_loss(logits.reshape({-1, cfg.vocab_size}), batches[0].targets.reshape({-1})).backward();
    opt->step();
  };
  auto analysis = [&] { analyze_model(model, batches, ao, nullptr); };
  auto intervene = [&] { intervene_model(model, batches, ao, io); };
  train_step(), analysis(), intervene();  // warm-up: allocator, BLAS threads
  Seconds t_train, t_analysis, t_intervene;
  for (int i = 0; i < s.iters; ++i) {
    timed(train_step, t_train);
    timed(analysis, t_analysis);
    timed(intervene, t_intervene);
  }
  const double n = s.iters;
  std::printf("metalm bench intervene: %d intra-op thread(s) on %s, %d timed iterations\n", threads,
              device.str().c_str(), s.iters);
  std::printf("model: %lld layers, d %lld, vocab 256; batch %lld x %lld tokens; %s granularity; alphas %s; "
              "%lld bootstrap resamples; %s edited states per forward pass\n",
              static_cast<long long>(s.layers), static_cast<long long>(s.d_model), static_cast<long long>(s.batch),
              static_cast<long long>(s.seq), s.granularity.c_str(), s.alphas.c_str(),
              static_cast<long long>(s.resamples), s.copies ? std::to_string(s.copies).c_str() : "auto");
  std::printf("  training step (fwd+bwd+AdamW)   %8.1f ms (CPU %8.1f ms)\n", 1e3 * t_train.wall / n,
              1e3 * t_train.cpu / n);
  std::printf("  analysis of the batch           %8.1f ms (CPU %8.1f ms)   = %.2f x a training step (CPU %.2f)\n",
              1e3 * t_analysis.wall / n, 1e3 * t_analysis.cpu / n, t_analysis.wall / t_train.wall,
              t_analysis.cpu / t_train.cpu);
  std::printf("  interventions of the batch      %8.1f ms (CPU %8.1f ms)   = %.2f x a training step, %.2f x the "
              "analysis (CPU %.2f)\n",
              1e3 * t_intervene.wall / n, 1e3 * t_intervene.cpu / n, t_intervene.wall / t_train.wall,
              t_intervene.wall / t_analysis.wall, t_intervene.cpu / t_analysis.cpu);
  return 0;
}

const BenchRegistration intervene_bench{
    "intervene", "cost of the causal tests of a batch vs one training step and vs its analysis",
    [](CLI::App& cmd, const GlobalOptions& global) {
      auto s = std::make_shared<Settings>();
      cmd.add_option("--layers", s->layers, "blocks")->type_name("L")->check(int_range(1, 1 << 16))->capture_default_str();
      cmd.add_option("--d-model", s->d_model, "residual width (4 heads)")->type_name("D")->check(int_range(4, 1 << 16))
          ->capture_default_str();
      cmd.add_option("--seq", s->seq, "tokens per sequence")->type_name("T")->check(int_range(1, kMaxTokens))->capture_default_str();
      cmd.add_option("--batch", s->batch, "sequences")->type_name("B")->check(int_range(1, kMaxBatch))->capture_default_str();
      cmd.add_option("--resamples", s->resamples, "bootstrap resamples")->type_name("R")->check(int_range(1, 100000))
          ->capture_default_str();
      cmd.add_option("--copies", s->copies, "edited states per partial forward pass (0: as many as keep an activation within 16 MiB)")
          ->type_name("N")->check(int_range(0, 1 << 16))->capture_default_str();
      cmd.add_option("--alphas", s->alphas, "multipliers of the line search (as intervene's --alphas)")
          ->type_name("A,A,...")->capture_default_str();
      cmd.add_option("--iters", s->iters, "timed iterations")->type_name("N")->check(int_range(1, 1 << 20))->capture_default_str();
      cmd.add_option("--granularity", s->granularity, "block | sublayer")->type_name("G")
          ->check(CLI::IsMember({"block", "sublayer"}))->capture_default_str();
      add_device_option(cmd, s->device);
      return std::function<int()>([s, &global]() { return run(*s, global); });
    }};

}  // namespace
}  // namespace metalm::cli
