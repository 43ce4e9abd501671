#include "metalm/analysis/analyze_model.hpp"

#include <torch/utils.h>

#include <cmath>
#include <optional>

#include "metalm/analysis/report.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/core/error.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/eval_scope.hpp"

namespace metalm {
namespace {

using json = nlohmann::json;

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

LensObjective make_lens_objective(CausalTransformer& model, const at::Tensor& targets) {
  CausalTransformer handle = model;  // shares the module
  return LensObjective([handle](const at::Tensor& h) mutable { return handle->lens_logits(h); }, targets,
                       model->config().vocab_size);
}

std::vector<std::string> trajectory_names(int64_t n_layer, Granularity granularity) {
  const bool sublayer = granularity == Granularity::Sublayer;
  std::vector<std::string> names{site_name(Site::ResidPre, 0)};
  for (int64_t l = 0; l < n_layer; ++l) {
    if (sublayer) names.push_back(site_name(Site::ResidMid, l));
    // resid_post[L-1] is `final`, the state the model's own readout sees.
    names.push_back(l + 1 == n_layer ? site_name(Site::Final) : site_name(Site::ResidPost, l));
  }
  return names;
}

ModelTrajectory capture_trajectory(CausalTransformer& model, const at::Tensor& inputs, Granularity granularity) {
  FullPrecisionScope exact;  // the states in the model's own precision, whatever the caller's autocast
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
  out.states = trace.trajectory(granularity);
  out.names = trajectory_names(trace.n_layer(), granularity);
  return out;
}

BatchAnalysis analyze_batch(CausalTransformer& model, const Batch& batch, size_t index, const AnalysisConfig& analysis,
                            const Lens& lens) {
  if (batch.inputs.sizes() != batch.targets.sizes())
    throw ShapeError("analyze_model: batch " + std::to_string(index) + " inputs and targets differ in shape");
  // Analysis is exact arithmetic in the parameters' dtype (fp32, or float64
  // where a test asks), even inside a bf16 training step's autocast.
  FullPrecisionScope exact;
  const c10::Device device = model->device();
  const at::Tensor inputs = batch.inputs.to(device), targets = batch.targets.to(device);
  ModelTrajectory mt = capture_trajectory(model, inputs, analysis.granularity);
  BatchAnalysis out;
  {
    // The model's own loss on the analysed positions, from its real logits.
    at::NoGradGuard no_grad;
    const at::Tensor logp = at::log_softmax(mt.logits.to(at::kDouble), -1);                          // [B, T, V]
    const at::Tensor valid = targets.ge(0);                                                      // [B, T]
    const at::Tensor nll = -logp.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1);  // [B, T]
    out.nll_sum = nll.masked_select(valid).sum().item<double>();
  }
  // A tuned lens maps every state into the final state's coordinates; the
  // mapped trajectory is read under the one logit lens (docs/design.md 5.2).
  mt.states = lens.translate(mt.states, mt.names);
  const LensObjective objective = make_lens_objective(model, targets);
  AnalysisConfig per_batch = analysis;
  // Different control draws per batch, reproducibly (modulo 2^64, like the seed itself).
  per_batch.seed = static_cast<int64_t>(static_cast<uint64_t>(analysis.seed) + index);
  out.trajectory = analyze_trajectory(mt.states, mt.names, objective, per_batch, inputs);
  Trajectory& tr = out.trajectory;
  tr.current_token = inputs.reshape({-1}).index_select(0, tr.rows).cpu();
  tr.target_token = targets.reshape({-1}).index_select(0, tr.rows).cpu();
  // Aggregation runs on the CPU (the per-position records are there already).
  tr.rows = tr.rows.cpu();
  tr.positions = tr.positions.cpu();
  return out;
}

namespace {

// The int64 per-position indices of a trajectory, first in the exchange format.
constexpr at::Tensor Trajectory::*kPositionIndices[] = {&Trajectory::rows, &Trajectory::positions,
                                                        &Trajectory::current_token, &Trajectory::target_token};

// Every [N] tensor of a batch's trajectory in the order of the exchange
// format: f(tensor, is_index). analyze_batch defines all of them.
template <class Tr, class F>
void for_each_packed(Tr& tr, F&& f) {
  for (auto index : kPositionIndices) f(tr.*index, true);
  for (size_t k = 0; k < tr.states.size(); ++k)
    for (const auto& stat : kStateStatistics)
      if (holds(stat.presence, k, tr.states.size())) f(tr.states[k].*stat.member, false);
  for (auto& st : tr.steps)
    for (const auto& stat : kStepStatistics) f(st.*stat.member, false);
}

// The values of a batch's trajectory that are not per position, after them
// in the exchange format: each step's null-band sums and counts ([P] each).
template <class Tr, class F>
void for_each_packed_total(Tr& tr, F&& f) {
  for (auto& st : tr.steps) {
    f(st.null_sum);
    f(st.null_count);
  }
}

// A trajectory with the sites of the model's analysis and no values: the
// layout the exchange format fills.
Trajectory empty_trajectory(const ModelConfig& config, const Batch& batch, Granularity granularity) {
  Trajectory tr;
  tr.batch = batch.inputs.size(0);
  tr.length = batch.inputs.size(1);
  tr.width = config.d_model;
  const std::vector<std::string> names = trajectory_names(config.n_layer, granularity);
  for (const auto& name : names) {
    StateRecord s;
    s.site = name;
    tr.states.push_back(std::move(s));
  }
  for (size_t k = 0; k + 1 < names.size(); ++k) {
    StepRecord st;
    st.from = names[k];
    st.to = names[k + 1];
    tr.steps.push_back(std::move(st));
  }
  return tr;
}

int64_t values_per_position(const ModelConfig& config, const Batch& batch, Granularity granularity) {
  const Trajectory layout = empty_trajectory(config, batch, granularity);
  int64_t n = 0;
  for_each_packed(layout, [&n](const at::Tensor&, bool) { ++n; });
  return n;
}

int64_t analysed_positions(const Batch& batch) { return batch.targets.ge(0).sum().item<int64_t>(); }

}  // namespace

int64_t packed_numel(const ModelConfig& config, const Batch& batch, const AnalysisConfig& analysis) {
  const int64_t steps = static_cast<int64_t>(trajectory_names(config.n_layer, analysis.granularity).size()) - 1;
  return 1 + analysed_positions(batch) * values_per_position(config, batch, analysis.granularity) +
         steps * 2 * analysis.permutations;
}

at::Tensor pack(const BatchAnalysis& part) {
  std::vector<at::Tensor> pieces{at::full({1}, part.nll_sum, at::kDouble)};
  for_each_packed(part.trajectory, [&](const at::Tensor& t, bool) {
    if (!t.defined()) throw ShapeError("pack: the trajectory lacks a field of the exchange format");
    pieces.push_back(t.to(at::kDouble).reshape({-1}));
  });
  for_each_packed_total(part.trajectory, [&](const at::Tensor& t) {
    if (!t.defined()) throw ShapeError("pack: the trajectory lacks the null band");
    pieces.push_back(t.to(at::kDouble).reshape({-1}));
  });
  return at::cat(pieces);
}

BatchAnalysis unpack(const at::Tensor& flat, const ModelConfig& config, const Batch& batch,
                     const AnalysisConfig& analysis) {
  const int64_t positions = analysed_positions(batch);
  const int64_t expected = packed_numel(config, batch, analysis);
  if (flat.dim() != 1 || flat.numel() != expected)
    throw ShapeError("unpack: " + std::to_string(flat.numel()) + " values where the batch needs " +
                     std::to_string(expected));
  BatchAnalysis out;
  out.nll_sum = flat[0].item<double>();
  out.trajectory = empty_trajectory(config, batch, analysis.granularity);
  int64_t offset = 1;
  for_each_packed(out.trajectory, [&](at::Tensor& t, bool is_index) {
    t = flat.narrow(0, offset, positions).clone();
    if (is_index) t = t.to(at::kLong);
    offset += positions;
  });
  for_each_packed_total(out.trajectory, [&](at::Tensor& t) {
    t = flat.narrow(0, offset, analysis.permutations).clone();
    offset += analysis.permutations;
  });
  return out;
}

json summarize_analysis(CausalTransformer& model, const std::vector<Batch>& batches,
                        const std::vector<BatchAnalysis>& parts, const AnalysisConfig& analysis,
                        const DatasetMeta* meta, const std::string& lens) {
  if (batches.empty() || parts.size() != batches.size())
    throw ShapeError("summarize_analysis: " + std::to_string(parts.size()) + " analyses for " +
                     std::to_string(batches.size()) + " batches");
  const ModelConfig& cfg = model->config();
  std::optional<FrequencyBins> bins;
  if (meta) bins.emplace(meta->train_counts, analysis.freq_bins);

  std::vector<Trajectory> trajectories;
  double final_loss_sum = 0.0;
  for (const auto& p : parts) {
    trajectories.push_back(p.trajectory);
    final_loss_sum += p.nll_sum;
  }
  const Trajectory all = concat(trajectories);
  const int64_t final_count = all.count();
  const FrequencyBins* bins_ptr = bins ? &*bins : nullptr;

  json j;
  j["format"] = kAnalysisFormat;
  j["version"] = kAnalysisVersion;
  j["tokens"] = final_count;
  j["batches"] = batches.size();
  j["batch_size"] = batches[0].inputs.size(0);
  j["seq_len"] = batches[0].inputs.size(1);
  j["granularity"] = to_string(analysis.granularity);
  j["d_model"] = cfg.d_model;
  j["n_layer"] = cfg.n_layer;
  j["vocab_size"] = cfg.vocab_size;
  j["seed"] = static_cast<uint64_t>(analysis.seed);
  // The spread of one position's cosine with a random direction, not a band for a mean (5.5).
  j["chance_alignment_per_token"] = 1.0 / std::sqrt(static_cast<double>(cfg.d_model));
  const ClusterBootstrap boot = sequence_bootstrap(all, analysis);
  j["bootstrap"] = {{"resamples", boot.resamples()}, {"seed", boot.seed()}, {"level", 0.95}, {"clusters", boot.clusters()}};
  j["permutations"] = analysis.permutations;
  j["lens"] = lens;
  j["final_loss"] = number(final_count ? final_loss_sum / static_cast<double>(final_count) : NAN);
  json steps = steps_to_json(all, bins_ptr, &boot);
  for (size_t k = 0; k < steps.size(); ++k) label_step(steps[k], k, analysis.granularity);
  j["steps"] = std::move(steps);
  j["states"] = states_to_json(all, bins_ptr, &boot);
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

json analyze_model_sharded(CausalTransformer& model, const std::vector<Batch>& batches, const AnalysisConfig& analysis,
                           const DatasetMeta* meta, int rank, int world, const SumOverRanks& sum, const Lens& lens) {
  if (batches.empty()) throw ShapeError("analyze_model: no batches to analyse");
  if (world < 1 || rank < 0 || rank >= world)
    throw ShapeError("analyze_model: rank " + std::to_string(rank) + " of a world of " + std::to_string(world));
  const ModelConfig& cfg = model->config();
  // A model may pad its vocabulary beyond the tokenizer's, never the reverse.
  if (meta && static_cast<int64_t>(meta->train_counts.size()) > cfg.vocab_size)
    throw ShapeError("analyze_model: meta.json counts " + std::to_string(meta->train_counts.size()) +
                     " token ids but the model's vocab_size is " + std::to_string(cfg.vocab_size));
  check_lens(analysis, lens, "analyze_model");
  EvalScope eval(*model);
  std::vector<BatchAnalysis> parts(batches.size());
  if (world == 1) {
    for (size_t b = 0; b < batches.size(); ++b) parts[b] = analyze_batch(model, batches[b], b, analysis, lens);
    return summarize_analysis(model, batches, parts, analysis, meta, lens.name());
  }
  std::vector<int64_t> offsets{0};
  for (const auto& batch : batches) offsets.push_back(offsets.back() + packed_numel(cfg, batch, analysis));
  at::Tensor buffer = at::zeros({offsets.back()}, at::kDouble);
  for (size_t b = static_cast<size_t>(rank); b < batches.size(); b += static_cast<size_t>(world))
    buffer.narrow(0, offsets[b], offsets[b + 1] - offsets[b]).copy_(pack(analyze_batch(model, batches[b], b, analysis, lens)));
  sum(buffer);
  for (size_t b = 0; b < batches.size(); ++b)
    parts[b] = unpack(buffer.narrow(0, offsets[b], offsets[b + 1] - offsets[b]), cfg, batches[b], analysis);
  return summarize_analysis(model, batches, parts, analysis, meta, lens.name());
}

json analyze_model(CausalTransformer& model, const std::vector<Batch>& batches, const AnalysisConfig& analysis,
                   const DatasetMeta* meta, const Lens& lens) {
  return analyze_model_sharded(model, batches, analysis, meta, 0, 1, nullptr, lens);
}

json analyze_untrained(const ModelConfig& config, uint64_t init_seed, const std::vector<Batch>& batches,
                       const AnalysisConfig& analysis, const DatasetMeta* meta) {
  torch::manual_seed(init_seed);
  CausalTransformer fresh(config);
  // A tuned lens fitted to the trained model means nothing for this one (5.5).
  AnalysisConfig logit = analysis;
  logit.lens = "logit";
  return analyze_model(fresh, batches, logit, meta, *logit_lens());
}

}  // namespace metalm
