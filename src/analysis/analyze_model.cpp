#include "metalm/analysis/analyze_model.hpp"

#include <torch/utils.h>

#include <cmath>
#include <optional>

#include "metalm/analysis/report.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/core/error.hpp"

namespace metalm {
namespace {

using json = nlohmann::json;

// Puts the model in eval mode (dropout off: the analysed trajectory is the
// deterministic one) and restores its mode on exit.
class EvalModeScope {
 public:
  explicit EvalModeScope(CausalTransformer& m) : model_(m), was_training_(m->is_training()) { model_->eval(); }
  ~EvalModeScope() { model_->train(was_training_); }
  EvalModeScope(const EvalModeScope&) = delete;
  EvalModeScope& operator=(const EvalModeScope&) = delete;

 private:
  CausalTransformer& model_;
  bool was_training_;
};

// Which layer a step belongs to and what it is.
void label_step(json& step, size_t index, Granularity g) {
  if (g == Granularity::Block) {
    step["layer"] = index;
    step["kind"] = "block";
  } else {
    step["layer"] = index / 2;
    step["kind"] = (index % 2 == 0) ? "attn" : "mlp";
  }
}

}  // namespace

AnalysisOptions AnalysisOptions::from_config(const AnalysisConfig& c) {
  AnalysisOptions o;
  o.granularity = c.granularity;
  o.chunk = c.chunk;
  o.seed = static_cast<uint64_t>(c.seed);
  o.freq_bins = c.freq_bins;
  return o;
}

LensObjective make_lens_objective(CausalTransformer& model, const at::Tensor& targets) {
  CausalTransformer handle = model;  // shares the module
  return LensObjective([handle](const at::Tensor& h) mutable { return handle->lens_logits(h); }, targets,
                       model->config().vocab_size);
}

ModelTrajectory capture_trajectory(CausalTransformer& model, const at::Tensor& inputs, Granularity granularity) {
  const bool sublayer = granularity == Granularity::Sublayer;
  CaptureRequest request;
  request.sites = {Site::ResidPre, Site::ResidPost};
  if (sublayer) request.sites.insert(Site::ResidMid);
  Trace trace;
  ModelTrajectory out;
  {
    at::NoGradGuard no_grad;
    out.logits = model->forward(inputs, request, trace);  // [B, T, V]
  }
  out.states = trace.trajectory(sublayer);
  const int64_t L = trace.n_layer();
  out.names.push_back(site_name(Site::ResidPre, 0));
  for (int64_t l = 0; l < L; ++l) {
    if (sublayer) out.names.push_back(site_name(Site::ResidMid, l));
    // resid_post[L-1] is `final`, the state the model's own readout sees.
    out.names.push_back(l + 1 == L ? site_name(Site::Final) : site_name(Site::ResidPost, l));
  }
  return out;
}

json analyze_model(CausalTransformer& model, const std::vector<Batch>& batches, const AnalysisOptions& opts,
                   const DatasetMeta* meta) {
  if (batches.empty()) throw ShapeError("analyze_model: no batches to analyse");
  EvalModeScope eval(model);
  const ModelConfig& cfg = model->config();
  std::optional<FrequencyBins> bins;
  if (meta) {
    // A model may pad its vocabulary beyond the tokenizer's, never the reverse.
    if (static_cast<int64_t>(meta->train_counts.size()) > cfg.vocab_size)
      throw ShapeError("analyze_model: meta.json counts " + std::to_string(meta->train_counts.size()) +
                       " token ids but the model's vocab_size is " + std::to_string(cfg.vocab_size));
    bins.emplace(meta->train_counts, opts.freq_bins);
  }

  std::vector<Trajectory> parts;
  double final_loss_sum = 0.0;
  int64_t final_count = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    const Batch& batch = batches[b];
    if (batch.inputs.sizes() != batch.targets.sizes())
      throw ShapeError("analyze_model: batch " + std::to_string(b) + " inputs and targets differ in shape");
    ModelTrajectory mt = capture_trajectory(model, batch.inputs, opts.granularity);
    {
      // The model's own loss on the analysed positions, from its real logits.
      at::NoGradGuard no_grad;
      const at::Tensor logp = at::log_softmax(mt.logits.to(at::kDouble), -1);          // [B, T, V]
      const at::Tensor valid = batch.targets.ge(0);                                      // [B, T]
      const at::Tensor nll = -logp.gather(-1, batch.targets.clamp_min(0).unsqueeze(-1)).squeeze(-1);  // [B, T]
      final_loss_sum += nll.masked_select(valid).sum().item<double>();
      final_count += valid.sum().item<int64_t>();
    }
    const LensObjective objective = make_lens_objective(model, batch.targets);
    TrajectoryOptions topts;
    topts.chunk = opts.chunk;
    topts.seed = opts.seed + b;  // a different wrong token per batch, reproducibly
    Trajectory tr = analyze_trajectory(mt.states, mt.names, objective, topts);
    tr.current_token = batch.inputs.reshape({-1}).index_select(0, tr.rows);
    tr.target_token = batch.targets.reshape({-1}).index_select(0, tr.rows);
    parts.push_back(std::move(tr));
  }
  const Trajectory all = concat(parts);
  const FrequencyBins* bins_ptr = bins ? &*bins : nullptr;

  json j;
  j["tokens"] = all.count();
  j["batches"] = batches.size();
  j["batch_size"] = batches[0].inputs.size(0);
  j["seq_len"] = batches[0].inputs.size(1);
  j["granularity"] = to_string(opts.granularity);
  j["d_model"] = cfg.d_model;
  j["n_layer"] = cfg.n_layer;
  j["vocab_size"] = cfg.vocab_size;
  j["seed"] = opts.seed;
  j["chance_alignment"] = 1.0 / std::sqrt(static_cast<double>(cfg.d_model));
  j["final_loss"] = number(final_count ? final_loss_sum / static_cast<double>(final_count) : NAN);
  json steps = steps_to_json(all, bins_ptr);
  for (size_t k = 0; k < steps.size(); ++k) label_step(steps[k], k, opts.granularity);
  j["steps"] = std::move(steps);
  j["states"] = states_to_json(all, bins_ptr);
  {
    at::NoGradGuard no_grad;
    j["tables"]["embedding"] = table_to_json(model->embedding_table(), bins_ptr);
    j["tables"]["unembedding"] = table_to_json(model->unembedding_table(), bins_ptr);
    j["tables"]["tied"] = cfg.tie_embeddings;
  }
  if (bins) {
    json edges = json::array();
    for (int64_t i = 0; i < bins->bins(); ++i) edges.push_back({bins->lower(i), bins->upper(i)});
    j["frequency_bins"] = {{"bins", bins->bins()}, {"count_ranges", edges}};
  }
  return j;
}

json analyze_untrained(const ModelConfig& config, uint64_t init_seed, const std::vector<Batch>& batches,
                       const AnalysisOptions& opts, const DatasetMeta* meta) {
  torch::manual_seed(init_seed);
  CausalTransformer fresh(config);
  return analyze_model(fresh, batches, opts, meta);
}

}  // namespace metalm
