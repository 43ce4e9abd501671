// `metalm lens-train`: fits a tuned lens (one affine translator per residual
// state) for a checkpoint on a token file and writes it as safetensors, for
// `metalm analyze --lens tuned:FILE` and analysis.lens.
#include <spdlog/spdlog.h>

#include <chrono>

#include "command.hpp"
#include "metalm/analysis/tuned_lens.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/weights.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/lens_train.hpp"

namespace metalm::cli {
namespace {

std::string joined(const std::vector<double>& v) {
  std::string s;
  for (double x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

const Registration lens_train_command{"lens-train", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string checkpoint, data, out, device = "auto";
    LensTrainOptions train;
    int64_t seed = 0;
    bool force = false, allow_nonfinite = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "lens-train", "fit a tuned lens (an affine translator per residual state) to a checkpoint's own predictions");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory, or a run directory (its newest checkpoint)")
      ->type_name("DIR")->required();
  cmd->add_option("--data", o->data, "token file of the training split (train.bin); its last 10% is held out")
      ->type_name("FILE.bin")->required()->check(CLI::ExistingFile);
  cmd->add_option("--out", o->out, "the lens, as safetensors")->type_name("LENS.safetensors")->required();
  cmd->add_option("--steps", o->train.steps, "optimizer steps")->type_name("N")->check(int_range(0, kMaxBatches))
      ->capture_default_str();
  cmd->add_option("--lr", o->train.lr, "Adam learning rate")->type_name("X")->check(real_range(1e-12, 1e3))
      ->capture_default_str();
  cmd->add_option("--batch-size", o->train.batch_size, "windows per step (and per held-out batch)")->type_name("B")
      ->check(int_range(1, kMaxBatch))->capture_default_str();
  cmd->add_option("--seq-len", o->train.seq_len, "tokens per window (default: the model's context)")->type_name("T")
      ->check(int_range(1, kMaxTokens));
  cmd->add_option("--seed", o->seed, "seed of the training windows")->type_name("S")->check(int_range(0))
      ->capture_default_str();
  cmd->add_flag("--force", o->force, "replace an existing --out file");
  cmd->add_flag("--allow-nonfinite", o->allow_nonfinite, "load weights holding NaN or Inf (forensics)");
  add_device_option(*cmd, o->device);

  return std::function<int()>([o, &global]() {
    check_output(o->out, OutputKind::File, o->force, "--out",
                 {{"--checkpoint", checkpoint_to_load(o->checkpoint), /*tree=*/true}, {"--data", o->data}});
    set_threads(global.threads);
    const c10::Device device = resolve_device(device_kind(o->device), "--device");
    LoadedCheckpoint ck = load_checkpoint(o->checkpoint, LoadWeightsOptions{o->allow_nonfinite});
    ck.model->to(device);
    const ModelConfig& m = ck.config.model;
    if (o->train.seq_len > m.context)
      throw ConfigError("lens-train: --seq-len " + std::to_string(o->train.seq_len) + " is longer than the context of " +
                        ck.path + " (" + std::to_string(m.context) + " tokens)");
    // The frozen model's forward pass and the translators' training on its
    // states, one [d, d] translator (with Adam's two moments) per state.
    const int64_t seq_len = o->train.seq_len ? o->train.seq_len : m.context;
    const double translators = 16.0 * static_cast<double>(2 * m.n_layer + 1) * static_cast<double>(m.d_model) *
                               static_cast<double>(m.d_model);
    check_memory_estimate(parameter_bytes(m) + translators + activation_bytes(m, o->train.batch_size, seq_len),
                          "lens-train --batch-size " + std::to_string(o->train.batch_size) + " x --seq-len " +
                              std::to_string(seq_len));
    const TokenDataset data(o->data);
    LensTrainOptions opts = o->train;
    opts.seed = static_cast<uint64_t>(o->seed);
    spdlog::info("lens-train: {} (step {}), {} steps of {} windows from {}", ck.path, ck.state.step, opts.steps,
                 opts.batch_size, o->data);
    const auto start = std::chrono::steady_clock::now();
    LensReport report;
    const TunedLens lens = train_tuned_lens(ck.model, data, opts, &report, [&](int64_t step, double loss) {
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      spdlog::info("lens-train: step {}/{}  KL summed over states {:.4f} nats  ({:.1f} s)", step, opts.steps, loss, s);
    });
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info("lens-train: held-out KL(model || lens) per state, nats per position ({} positions):",
                 report.heldout_positions);
    for (size_t k = 0; k < report.sites.size(); ++k)
      spdlog::info("  {:>22}  logit lens {:.4f}  tuned lens {:.4f}", report.sites[k], report.kl_logit[k],
                   report.kl_tuned[k]);
    save_tuned_lens(o->out, lens, ck.config.model,
                    {{"checkpoint", ck.path},
                     {"step", std::to_string(ck.state.step)},
                     {"steps", std::to_string(opts.steps)},
                     {"lr", std::to_string(opts.lr)},
                     {"batch_size", std::to_string(opts.batch_size)},
                     {"seed", std::to_string(opts.seed)},
                     {"heldout_sites", [&] {
                        std::string s;
                        for (const auto& x : report.sites) s += (s.empty() ? "" : ",") + x;
                        return s;
                      }()},
                     {"heldout_kl_logit", joined(report.kl_logit)},
                     {"heldout_kl_tuned", joined(report.kl_tuned)}});
    spdlog::info("lens-train: wrote {} ({:.1f} s)", o->out, seconds);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
