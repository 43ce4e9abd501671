// `metalm intervene`: the causal tests of the inner optimization
// (docs/design.md 5.8) on a checkpoint and a token file or a list of ids,
// beside the untrained model's same tests, written as one JSON
// ("format": "metalm-intervene", docs/design.md 7).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "command.hpp"
#include "token_ids.hpp"
#include "metalm/analysis/intervene.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/model/device.hpp"
#include "metalm/train/checkpoint.hpp"

namespace metalm::cli {
namespace {

std::vector<double> parse_alphas(const std::string& text) {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    double v = NAN;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !std::isfinite(v))
      throw ConfigError("--alphas: expected comma-separated finite numbers, got '" + text + "'");
    out.push_back(v);
  }
  if (out.empty() || out.size() > 64) throw ConfigError("--alphas: expected from 1 to 64 numbers, got '" + text + "'");
  return out;
}

// A JSON number, or NaN for null.
double num(const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

void log_steps(const nlohmann::json& r, const char* title) {
  spdlog::info("intervene: {} (loss change in nats, edited - unedited; final loss {:.4f})", title, num(r["final_loss"]));
  for (const auto& st : r["steps"])
    spdlog::info("  {:>22} -> {:<22} -grad {:+.4f}  -random {:+.4f}  -radial {:+.4f}  grad step {:+.4f}  "
                 "alpha_min {}",
                 st["from"].get<std::string>(), st["to"].get<std::string>(), num(st["remove_gradient"]["mean"]),
                 num(st["remove_random"]["mean"]), num(st["remove_radial"]["mean"]), num(st["gradient_step"]["mean"]),
                 st["alpha_min"].dump());
}

const Registration intervene_command{"intervene", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string checkpoint, data, ids, out, granularity, lens, alphas = "0,0.5,1,1.5,2";
    int64_t batches = 0, batch_size = 0, seq_len = 0, chunk = 0, seed = -1, resamples = 1000;
    bool no_control = false, allow_nonfinite = false, force = false;
    std::string device = "auto";
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "intervene", "edit each layer's update (remove its gradient, random or radial part, rescale it, replace it by a "
                   "gradient step) and measure the model's loss");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory, or a run directory (its newest checkpoint)")
      ->type_name("DIR")->required();
  auto* data = cmd->add_option("--data", o->data, "token file (train.bin/val.bin from `metalm prepare`)")
                   ->type_name("FILE.bin")->check(CLI::ExistingFile);
  auto* ids = cmd->add_option("--ids", o->ids, "whitespace-separated decimal token ids")->type_name("FILE")
                  ->check(CLI::ExistingFile);
  data->excludes(ids);
  cmd->add_option("--batches", o->batches, "batches (default: the config's analysis.batches)")->type_name("N")
      ->check(int_range(1, kMaxBatches));
  cmd->add_option("--batch-size", o->batch_size, "sequences per batch (default: analysis.batch_size)")->type_name("B")
      ->check(int_range(1, kMaxBatch));
  cmd->add_option("--seq-len", o->seq_len, "tokens per sequence (default: train.seq_len)")->type_name("T")
      ->check(int_range(1, kMaxTokens));
  cmd->add_option("--granularity", o->granularity, "block | sublayer (default: analysis.granularity)")
      ->type_name("G")->check(CLI::IsMember({"block", "sublayer"}));
  cmd->add_option("--lens", o->lens, "logit | tuned:LENS.safetensors: the gradient removed and stepped along "
                                     "(default: analysis.lens)")->type_name("LENS");
  cmd->add_option("--alphas", o->alphas, "multipliers of the line search s_k + alpha * update")
      ->type_name("A,A,...")->capture_default_str();
  cmd->add_option("--resamples", o->resamples, "bootstrap resamples over sequences for the 95% intervals")
      ->type_name("R")->check(int_range(1, 100000))->capture_default_str();
  cmd->add_option("--chunk", o->chunk, "positions per autograd chunk (default: analysis.chunk)")->type_name("N")
      ->check(int_range(1, kMaxChunk));
  cmd->add_option("--seed", o->seed, "seed of the random directions and the bootstrap (default: analysis.seed)")
      ->type_name("S")->check(int_range(0));
  cmd->add_flag("--no-control-untrained", o->no_control,
                "skip the untrained model's same interventions (key control_untrained)");
  cmd->add_flag("--allow-nonfinite", o->allow_nonfinite,
                "load weights holding NaN or Inf (forensics; refused by default)");
  cmd->add_option("--out", o->out, "output JSON file")->type_name("FILE.json")->required();
  cmd->add_flag("--force", o->force, "replace an existing --out file");
  add_device_option(*cmd, o->device);

  return std::function<int()>([o, &global]() {
    if (o->data.empty() && o->ids.empty()) throw ConfigError("intervene: give the tokens with --data or --ids");
    const std::string lens_path = o->lens.rfind("tuned:", 0) == 0 ? o->lens.substr(6) : std::string();
    check_output(o->out, OutputKind::File, o->force, "--out",
                 {{"--checkpoint", checkpoint_to_load(o->checkpoint), /*tree=*/true}, {"--data", o->data},
                  {"--ids", o->ids}, {"--lens", lens_path}});
    InterveneOptions options;
    options.alphas = parse_alphas(o->alphas);
    options.resamples = o->resamples;
    check_intervene_options(options);
    set_threads(global.threads);
    const c10::Device device = resolve_device(device_kind(o->device), "--device");
    LoadedCheckpoint ck = load_checkpoint(o->checkpoint, LoadWeightsOptions{o->allow_nonfinite});
    ck.model->to(device);
    const RunConfig& cfg = ck.config;
    const int64_t n_batches = o->batches ? o->batches : cfg.analysis.batches;
    const int64_t batch_size = o->batch_size ? o->batch_size : cfg.analysis.batch_size;
    const int64_t seq_len = std::min(o->seq_len ? o->seq_len : cfg.train.seq_len, cfg.model.context);
    AnalysisConfig opts = cfg.analysis;
    if (!o->granularity.empty()) opts.granularity = o->granularity == "sublayer" ? Granularity::Sublayer : Granularity::Block;
    if (o->chunk) opts.chunk = o->chunk;
    if (o->seed >= 0) opts.seed = o->seed;
    if (!o->lens.empty()) {
      opts.lens = o->lens;
      if (opts.lens != "logit" && opts.tuned_lens_path().empty())
        throw ConfigError("intervene: --lens " + o->lens + ": expected logit or tuned:LENS.safetensors");
    }
    // The lens is read once, here: a bad lens file fails before any batch is read or run.
    const std::shared_ptr<const Lens> lens = make_lens(opts, cfg.model);
    // The config's values are checked like the options', before anything is allocated.
    auto in_range = [](int64_t v, int64_t max, const char* option) {
      if (v < 1 || v > max)
        throw ConfigError(std::string("intervene: ") + option + " (or its config key) = " + std::to_string(v) +
                          " is out of range: expected an integer from 1 to " + with_commas(max));
    };
    in_range(n_batches, kMaxBatches, "--batches");
    in_range(batch_size, kMaxBatch, "--batch-size");
    in_range(seq_len, kMaxTokens, "--seq-len");
    in_range(opts.chunk, kMaxChunk, "--chunk");
    if (n_batches * batch_size * seq_len > kMaxAnalysedTokens)  // < 2^56 within the ranges: no overflow
      throw ConfigError("intervene: " + with_commas(n_batches) + " batches x " + with_commas(batch_size) +
                        " sequences x " + with_commas(seq_len) + " tokens is more than the " +
                        with_commas(kMaxAnalysedTokens) + " tokens one run holds; lower --batches or --batch-size");

    std::vector<Batch> batches;
    nlohmann::json source;
    if (!o->data.empty()) {
      TokenDataset ds(o->data);
      ds.check_vocab(cfg.model.vocab_size, "the model");
      batches = fixed_eval_batches(ds, n_batches, batch_size, seq_len);
      source = {{"data", o->data}};
    } else {
      batches = id_batches(read_token_ids(o->ids, cfg.model.vocab_size), seq_len, batch_size, n_batches,
                           cfg.model.vocab_size, o->ids);
      source = {{"ids", o->ids}};
    }

    spdlog::info("intervene: {} (step {}), {} batch(es) of {} x {} tokens, {} granularity, {} lens", ck.path,
                 ck.state.step, batches.size(), batches[0].inputs.size(0), batches[0].inputs.size(1),
                 to_string(opts.granularity), opts.lens);
    nlohmann::json result = intervene_model(ck.model, batches, opts, options, *lens);
    result["checkpoint"] = ck.path;
    result["step"] = ck.state.step;
    result["source"] = source;
    log_steps(result, "the checkpoint");
    if (!o->no_control) {
      spdlog::info("intervene: untrained control (fresh model, seed {})", cfg.train.seed);
      nlohmann::json control =
          intervene_untrained(cfg.model, static_cast<uint64_t>(cfg.train.seed), batches, opts, options);
      log_steps(control, "the untrained control (\"control_untrained\" in the output)");
      result["control_untrained"] = std::move(control);
    }
    write_json_file(o->out, result);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
