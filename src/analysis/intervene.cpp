#include "metalm/analysis/intervene.hpp"

#include <ATen/Parallel.h>
#include <torch/utils.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <memory>
#include <optional>
#include <string>

#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/inference.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/hash.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/eval_scope.hpp"

namespace metalm {
namespace {

using json = nlohmann::json;

void check_states(const std::vector<at::Tensor>& states, const Objective& objective) {
  if (states.size() < 2) throw ShapeError("intervene: a trajectory needs at least two states");
  for (const auto& s : states)
    if (s.dim() != 3 || s.sizes() != states[0].sizes())
      throw ShapeError("intervene: every state must be [B, T, d] with the same shape");
  const at::Tensor valid = objective.valid();
  if (valid.dim() != 2 || valid.size(0) != states[0].size(0) || valid.size(1) != states[0].size(1))
    throw ShapeError("intervene: the objective's positions do not match the states' [B, T]");
}

at::Tensor analysed_rows(const Objective& objective) {
  return objective.valid().reshape({-1}).nonzero().reshape({-1});  // [N]
}

// The lens gradient at the analysed positions' states h: [N, d], h's dtype.
at::Tensor lens_gradient(const Objective& objective, const at::Tensor& h, const at::Tensor& rows, int64_t chunk) {
  if (chunk < 1) throw ConfigError("intervene: chunk must be at least 1, got " + std::to_string(chunk));
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < h.size(0); i += chunk) {
    const int64_t n = std::min(chunk, h.size(0) - i);
    parts.push_back(loss_and_grad(objective, h.narrow(0, i, n), rows.narrow(0, i, n)).grad);
  }
  if (parts.empty()) return at::zeros({0, h.size(1)}, h.options());
  return at::cat(parts);
}

at::Tensor row_dot(const at::Tensor& a, const at::Tensor& b) { return (a * b).sum(1); }  // [N, d] x [N, d] -> [N]

// One step seen at the analysed positions, in float64: s_k, s_{k+1}, Δ_k and g
// (the lens gradient at s_k, as lens_gradients computes it).
struct StepView {
  at::Tensor state, next, update, grad;  // [N, d]
};

StepView view_step(const std::vector<at::Tensor>& states, size_t k, const at::Tensor& rows, const at::Tensor& grad) {
  const int64_t d = states[k].size(2);
  StepView v;
  v.state = states[k].reshape({-1, d}).index_select(0, rows).to(at::kDouble);
  v.next = states[k + 1].reshape({-1, d}).index_select(0, rows).to(at::kDouble);
  v.update = v.next - v.state;
  v.grad = grad.to(at::kDouble);
  return v;
}

at::Tensor least_squares_step(const StepView& v) { return -row_dot(v.update, v.grad) / row_dot(v.grad, v.grad); }

// The loss changes ([N] double each, on the CPU) when the analysed positions
// of state j ([B, T, d]) become each of `edits` ([N, d] double). A row whose
// edit is not finite in the state's dtype keeps its state (so it cannot
// spoil later positions through attention) and reports NaN. An edit that
// leaves the state as it is changes nothing: 0 without a forward pass. The
// others run `copies` at a time, stacked along the batch dimension, through
// one call of loss_from.
std::vector<at::Tensor> effects(const at::Tensor& state, size_t j, const at::Tensor& rows,
                                const std::vector<at::Tensor>& edits, const LossFromState& loss_from,
                                const at::Tensor& unedited_loss, int64_t copies) {
  const int64_t B = state.size(0), T = state.size(1), d = state.size(2), BT = B * T;
  const at::Tensor flat = state.reshape({BT, d});
  struct Pending {
    size_t index;
    at::Tensor at, values, finite;  // rows written, their values (state dtype), [N] finite edits
  };
  std::vector<at::Tensor> out(edits.size());
  std::vector<Pending> pending;
  for (size_t e = 0; e < edits.size(); ++e) {
    // Finite in the state's dtype: an edit that overflows it keeps the state too.
    at::Tensor values = edits[e].to(flat.scalar_type());
    const at::Tensor finite = values.isfinite().all(1);  // [N]
    Pending p{e, rows, std::move(values), finite.cpu()};
    if (!p.finite.all().item<bool>()) {
      const at::Tensor keep = finite.nonzero().reshape({-1});
      p.at = rows.index_select(0, keep);
      p.values = p.values.index_select(0, keep);
    }
    if (at::equal(p.values, flat.index_select(0, p.at)))
      out[e] = at::where(p.finite, at::zeros_like(unedited_loss), at::full_like(unedited_loss, NAN));
    else
      pending.push_back(std::move(p));
  }
  at::NoGradGuard no_grad;
  for (size_t first = 0; first < pending.size(); first += static_cast<size_t>(copies)) {
    const int64_t m = std::min(copies, static_cast<int64_t>(pending.size() - first));
    at::Tensor stacked = flat.repeat({m, 1});  // [m·B·T, d]
    for (int64_t i = 0; i < m; ++i) {
      const Pending& p = pending[first + static_cast<size_t>(i)];
      stacked.index_copy_(0, p.at + i * BT, p.values);
    }
    const at::Tensor loss = loss_from(j, stacked.reshape({m * B, T, d}));
    if (loss.dim() != 2 || loss.size(0) != m * B || loss.size(1) != T)
      throw ShapeError("intervene: the loss of " + std::to_string(m) + " stacked states must be [" +
                       std::to_string(m * B) + ", " + std::to_string(T) + "]");
    const at::Tensor per_copy = loss.reshape({m, BT});
    for (int64_t i = 0; i < m; ++i) {
      const Pending& p = pending[first + static_cast<size_t>(i)];
      const at::Tensor change = per_copy[i].index_select(0, rows).to(at::kDouble).cpu() - unedited_loss;
      out[p.index] = at::where(p.finite, change, at::full_like(change, NAN));
    }
  }
  return out;
}

}  // namespace

std::vector<at::Tensor> lens_gradients(const std::vector<at::Tensor>& states, const Objective& objective,
                                       int64_t chunk) {
  check_states(states, objective);
  const at::Tensor rows = analysed_rows(objective);
  std::vector<at::Tensor> out;
  for (size_t k = 0; k + 1 < states.size(); ++k) {
    const at::Tensor h = states[k].reshape({-1, states[k].size(2)}).index_select(0, rows);  // [N, d]
    out.push_back(lens_gradient(objective, h, rows, chunk));
  }
  return out;
}

namespace {

std::vector<at::Tensor> step_sizes_of(const std::vector<at::Tensor>& states, const at::Tensor& rows,
                                      const std::vector<at::Tensor>& gradients) {
  std::vector<at::Tensor> out;
  for (size_t k = 0; k + 1 < states.size(); ++k)
    out.push_back(least_squares_step(view_step(states, k, rows, gradients[k])));
  return out;
}

void check_gradients(const std::vector<at::Tensor>& states, const at::Tensor& rows,
                     const std::vector<at::Tensor>& gradients) {
  if (gradients.size() != states.size() - 1)
    throw ShapeError("intervene: " + std::to_string(gradients.size()) + " lens gradients for " +
                     std::to_string(states.size() - 1) + " steps");
  for (const auto& g : gradients)
    if (g.dim() != 2 || g.size(0) != rows.size(0) || g.size(1) != states[0].size(2))
      throw ShapeError("intervene: every lens gradient must be [N, d] over the analysed positions");
}

}  // namespace

std::vector<at::Tensor> step_sizes(const std::vector<at::Tensor>& states, const Objective& objective, int64_t chunk) {
  return step_sizes_of(states, analysed_rows(objective), lens_gradients(states, objective, chunk));
}

at::Tensor random_directions(uint64_t seed, const at::Tensor& rows, int64_t length, int64_t step, int64_t d) {
  const at::Tensor r = rows.to(at::kLong).cpu().contiguous();
  const int64_t n = r.numel();
  at::Tensor u = at::empty({n, d}, at::TensorOptions(at::kDouble)), v = at::empty_like(u);
  const int64_t* row = r.data_ptr<int64_t>();
  double* pu = u.data_ptr<double>();
  double* pv = v.data_ptr<double>();
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  constexpr double kUnit = 1.0 / 9007199254740992.0;  // 2^-53
  // Every coordinate is a pure function of its indices: any split over threads draws the same.
  at::parallel_for(0, n, 64, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = row[i] / length, t = row[i] % length;
      for (int64_t j = 0; j < d; ++j) {
        pu[i * d + j] = static_cast<double>((mix(seed, b, t, step, 2 * j) >> 11) + 1) * kUnit;  // (0, 1]
        pv[i * d + j] = static_cast<double>(mix(seed, b, t, step, 2 * j + 1) >> 11) * kUnit;    // [0, 1)
      }
    }
  });
  const at::Tensor z = at::sqrt(-2.0 * at::log(u)) * at::cos(kTwoPi * v);  // Box–Muller, vectorised
  return z / z.norm(2, {1}, /*keepdim=*/true);
}

TrajectoryInterventions intervene_trajectory(const std::vector<at::Tensor>& states, const Objective& objective,
                                             const LossFromState& loss_from,
                                             const std::vector<double>& median_step_size,
                                             const std::vector<double>& alphas, uint64_t seed, int64_t chunk,
                                             int64_t copies, const std::vector<at::Tensor>& gradients) {
  check_states(states, objective);
  if (copies < 1) throw ConfigError("intervene: copies must be at least 1, got " + std::to_string(copies));
  const size_t K = states.size() - 1;
  if (median_step_size.size() != K)
    throw ShapeError("intervene: " + std::to_string(median_step_size.size()) + " median step sizes for " +
                     std::to_string(K) + " steps");
  const int64_t B = states[0].size(0), T = states[0].size(1), d = states[0].size(2);
  TrajectoryInterventions out;
  out.rows = analysed_rows(objective);
  const at::Tensor& rows = out.rows;
  const std::vector<at::Tensor> grads = gradients.empty() ? lens_gradients(states, objective, chunk) : gradients;
  check_gradients(states, rows, grads);
  {
    at::NoGradGuard no_grad;
    const at::Tensor loss = loss_from(K, states[K]);  // [B, T]
    if (loss.dim() != 2 || loss.size(0) != B || loss.size(1) != T)
      throw ShapeError("intervene: the loss of a state must be [B, T]");
    out.loss = loss.reshape({-1}).index_select(0, rows).to(at::kDouble).cpu();
  }

  for (size_t k = 0; k < K; ++k) {
    const StepView v = view_step(states, k, rows, grads[k]);
    // Edits are written from s_{k+1} where they remove a part of Δ, so that
    // removing nothing (α = 1) gives s_{k+1} bit for bit.
    const at::Tensor& s = v.state;
    const at::Tensor& next = v.next;
    const at::Tensor& delta = v.update;
    const at::Tensor& g = v.grad;
    StepInterventions st;
    const at::Tensor along_g = row_dot(delta, g) / row_dot(g, g);  // [N]: proj_g(Δ) = along_g · g
    st.step_size = (-along_g).cpu();
    const at::Tensor energy = along_g * along_g * row_dot(g, g);  // ‖proj_g(Δ)‖²
    st.gradient_energy = energy.cpu();
    const at::Tensor r = random_directions(seed, rows, T, static_cast<int64_t>(k), d).to(s.device());
    const at::Tensor sign = at::where(row_dot(delta, r).lt(0), -at::ones_like(along_g), at::ones_like(along_g));
    // The edited states, in the order of kInterventions, then the line search.
    static_assert(std::size(kInterventions) == 5, "one edit per intervention, in their order");
    // Each in one pass over [N, d] (addcmul: a + b·c, b one coefficient per row).
    std::vector<at::Tensor> edits{
        at::addcmul(next, -along_g.unsqueeze(1), g),                              // remove_gradient
        at::addcmul(next, -(sign * energy.sqrt()).unsqueeze(1), r),               // remove_random
        at::addcmul(next, -(row_dot(delta, s) / row_dot(s, s)).unsqueeze(1), s),  // remove_radial
        at::addcmul(s, along_g.unsqueeze(1), g),                                  // gradient_step
        at::add(s, g, -median_step_size[k]),                                      // gradient_step_median
    };
    for (double alpha : alphas) edits.push_back(at::add(next, delta, alpha - 1.0));
    std::vector<at::Tensor> changes = effects(states[k + 1], k + 1, rows, edits, loss_from, out.loss, copies);
    size_t e = 0;
    for (const auto& iv : kInterventions) st.*iv.member = std::move(changes[e++]);
    for (; e < changes.size(); ++e) st.line_search.push_back(std::move(changes[e]));
    out.steps.push_back(std::move(st));
  }
  return out;
}

void check_intervene_options(const InterveneOptions& options) {
  if (options.alphas.empty() || options.alphas.size() > 64)
    throw ConfigError("intervene: --alphas needs from 1 to 64 values, got " + std::to_string(options.alphas.size()));
  for (double a : options.alphas)
    if (!std::isfinite(a)) throw ConfigError("intervene: --alphas must be finite numbers");
  if (options.resamples < 1 || options.resamples > 100000)
    throw ConfigError("intervene: --resamples = " + std::to_string(options.resamples) +
                      " is out of range: expected an integer from 1 to 100,000");
  if (!(options.level > 0 && options.level < 1))
    throw ConfigError("intervene: the interval's level must lie in (0, 1)");
  if (options.copies < 0)
    throw ConfigError("intervene: copies = " + std::to_string(options.copies) + " must not be negative");
}

namespace {

// The next-token loss per position [B, T] of logits [B, T, V] (any value
// where target < 0), reduced in the logits' dtype and returned as float64.
at::Tensor next_token_loss(const at::Tensor& logits, const at::Tensor& targets) {
  const at::Tensor picked = logits.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1);  // [B, T]
  return (at::logsumexp(logits, -1) - picked).to(at::kDouble);
}

// One batch's trajectory as the model holds it and as the lens reads it,
// and the one objective the readings are read through (docs/design.md 5.2),
// with each step's lens gradient at the analysed positions.
struct BatchContext {
  ModelTrajectory trajectory;
  std::vector<at::Tensor> readings;
  at::Tensor targets;
  std::unique_ptr<LensObjective> objective;
  std::vector<at::Tensor> gradients;  // K [N, d], the readings' dtype
};

BatchContext prepare_batch(CausalTransformer& model, const Batch& batch, size_t index, Granularity granularity,
                           const Lens& lens, int64_t chunk) {
  if (batch.inputs.dim() != 2 || batch.inputs.sizes() != batch.targets.sizes())
    throw ShapeError("intervene: batch " + std::to_string(index) + " inputs and targets differ in shape");
  BatchContext c;
  const c10::Device device = model->device();
  c.targets = batch.targets.to(device);
  c.trajectory = capture_trajectory(model, batch.inputs.to(device), granularity);
  c.readings = lens.translate(c.trajectory.states, c.trajectory.names);
  c.objective = std::make_unique<LensObjective>(make_lens_objective(model, c.targets));
  c.gradients = lens_gradients(c.readings, *c.objective, chunk);
  return c;
}

// Edited states per partial forward pass: as many as keep the forward's
// largest activation (attention scores, the MLP's hidden layer or the
// logits) within 16 MiB, at least one. Stacking saves the per-op overhead of
// small batches (4 x 64 tokens on Zen 4: 10 % of the interventions' time);
// for large ones it saves nothing (16 x 256: 9 copies at once as fast as one
// at a time) and takes `copies` times the memory.
int64_t stacked_copies(const ModelConfig& cfg, const Batch& batch, size_t element) {
  const double B = static_cast<double>(batch.inputs.size(0)), T = static_cast<double>(batch.inputs.size(1));
  const double largest = B * T *
                         std::max({static_cast<double>(cfg.n_head) * T, 4.0 * static_cast<double>(cfg.d_model),
                                   static_cast<double>(cfg.vocab_size)}) *
                         static_cast<double>(element);
  return std::max<int64_t>(1, static_cast<int64_t>(16777216.0 / largest));
}

json effect_json(const at::Tensor& values, const ClusterBootstrap& boot, double level) {
  const Interval ci = boot.mean_interval(values, level);
  const at::Tensor finite = values.isfinite();
  const int64_t n = finite.sum().item<int64_t>();
  const double mean = n ? values.masked_select(finite).mean().item<double>() : NAN;
  return {{"mean", number(mean)}, {"lo", number(ci.lo)}, {"hi", number(ci.hi)}, {"n", n}};
}

}  // namespace

json intervene_model(CausalTransformer& model, const std::vector<Batch>& batches, const AnalysisConfig& analysis,
                     const InterveneOptions& options, const Lens& lens) {
  check_intervene_options(options);
  if (batches.empty()) throw ShapeError("intervene: no batches");
  check_lens(analysis, lens, "intervene");
  const ModelConfig& cfg = model->config();
  EvalScope eval(*model);
  FullPrecisionScope exact;  // the states and their continuations in the parameters' dtype
  const Granularity granularity = analysis.granularity;
  const size_t K = static_cast<size_t>(granularity == Granularity::Sublayer ? 2 * cfg.n_layer : cfg.n_layer);
  const std::vector<std::string> names = trajectory_names(cfg.n_layer, granularity);
  const size_t element = model->parameters().empty() ? 4 : model->parameters()[0].element_size();

  // η̃ of a step is the median over every analysed position of every batch,
  // so a first pass measures the step sizes. Its trajectories and lens
  // gradients are kept for the second while they take at most 1 GiB, and
  // recomputed otherwise.
  std::vector<std::vector<at::Tensor>> etas(K);
  std::vector<std::optional<BatchContext>> kept(batches.size());
  double kept_bytes = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    BatchContext c = prepare_batch(model, batches[b], b, granularity, lens, analysis.chunk);
    const std::vector<at::Tensor> eta = step_sizes_of(c.readings, analysed_rows(*c.objective), c.gradients);
    for (size_t k = 0; k < K; ++k) etas[k].push_back(eta[k].cpu());
    kept_bytes += static_cast<double>((3 * K + 2) * c.trajectory.states[0].numel() * element);
    if (kept_bytes <= 1073741824.0) kept[b].emplace(std::move(c));
  }
  std::vector<double> median(K);
  for (size_t k = 0; k < K; ++k) median[k] = quantile(to_vector(at::cat(etas[k])), 0.5);

  std::vector<TrajectoryInterventions> parts;
  std::vector<at::Tensor> cluster;
  int64_t sequences = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    const BatchContext c =
        kept[b] ? std::move(*kept[b]) : prepare_batch(model, batches[b], b, granularity, lens, analysis.chunk);
    kept[b].reset();
    // The lens reads the edits; the model runs from the states that it reads so.
    const LossFromState loss_from = [&](size_t j, const at::Tensor& reading) {
      const at::Tensor& s = c.trajectory.states[j];
      const int64_t m = reading.size(0) / s.size(0);
      const at::Tensor edited = reading.reshape({m, s.size(0), s.size(1), s.size(2)});
      const at::Tensor state = lens.state_of(names[j], edited, s, c.readings[j]).reshape(reading.sizes());
      return next_token_loss(model->forward_from(state, static_cast<int64_t>(j), granularity),
                             c.targets.repeat({m, 1}));
    };
    // A different random direction per batch, reproducibly (modulo 2^64, like the seed itself).
    const uint64_t seed = static_cast<uint64_t>(analysis.seed) + b;
    const int64_t copies = options.copies > 0 ? options.copies : stacked_copies(cfg, batches[b], element);
    parts.push_back(intervene_trajectory(c.readings, *c.objective, loss_from, median, options.alphas, seed,
                                         analysis.chunk, copies, c.gradients));
    const int64_t T = batches[b].inputs.size(1);
    cluster.push_back(sequences + parts.back().rows.cpu().div(T, "floor"));  // the sequence of each position
    sequences += batches[b].inputs.size(0);
  }

  const ClusterBootstrap boot(at::cat(cluster), options.resamples, static_cast<uint64_t>(analysis.seed));
  auto joined = [&](auto get) {
    std::vector<at::Tensor> pieces;
    for (const auto& p : parts) pieces.push_back(get(p));
    return at::cat(pieces);
  };
  const at::Tensor loss = joined([](const TrajectoryInterventions& p) { return p.loss; });
  json steps = json::array();
  for (size_t k = 0; k < K; ++k) {
    auto step_values = [&](at::Tensor StepInterventions::*member) {
      return joined([&](const TrajectoryInterventions& p) { return p.steps[k].*member; });
    };
    json st;
    const bool sublayer = granularity == Granularity::Sublayer;
    st["layer"] = sublayer ? k / 2 : k;
    st["kind"] = sublayer ? (k % 2 == 0 ? "attn" : "mlp") : "block";
    st["from"] = names[k];
    st["to"] = names[k + 1];
    st["step_size_median"] = number(median[k]);
    st["gradient_energy"] = effect_json(step_values(&StepInterventions::gradient_energy), boot, options.level);
    for (const auto& iv : kInterventions) st[iv.key] = effect_json(step_values(iv.member), boot, options.level);
    // Paired: the same resampled sequences for both, so the interval is the difference's own.
    st["remove_gradient_minus_random"] =
        effect_json(step_values(&StepInterventions::remove_gradient) - step_values(&StepInterventions::remove_random),
                    boot, options.level);
    json curve = json::array();
    double best = INFINITY;
    json alpha_min = nullptr;
    for (size_t a = 0; a < options.alphas.size(); ++a) {
      json point = effect_json(joined([&](const TrajectoryInterventions& p) { return p.steps[k].line_search[a]; }),
                               boot, options.level);
      point["alpha"] = options.alphas[a];
      if (point["mean"].is_number() && point["mean"].get<double>() < best) {
        best = point["mean"].get<double>();
        alpha_min = options.alphas[a];
      }
      curve.push_back(std::move(point));
    }
    st["line_search"] = std::move(curve);
    st["alpha_min"] = alpha_min;
    steps.push_back(std::move(st));
  }

  json j;
  j["format"] = kInterveneFormat;
  j["version"] = kInterveneVersion;
  j["tokens"] = loss.numel();
  j["sequences"] = sequences;
  j["batches"] = batches.size();
  j["batch_size"] = batches[0].inputs.size(0);
  j["seq_len"] = batches[0].inputs.size(1);
  j["granularity"] = to_string(granularity);
  j["lens"] = lens.name();
  j["d_model"] = cfg.d_model;
  j["n_layer"] = cfg.n_layer;
  j["vocab_size"] = cfg.vocab_size;
  j["seed"] = static_cast<uint64_t>(analysis.seed);
  j["alphas"] = options.alphas;
  j["bootstrap"] = {{"resamples", boot.resamples()}, {"seed", boot.seed()}, {"level", options.level},
                    {"clusters", "sequence"}, {"sequences", boot.clusters()}};
  j["final_loss"] = number(summarize(loss).mean);
  j["steps"] = std::move(steps);
  return j;
}

json intervene_untrained(const ModelConfig& config, uint64_t init_seed, const std::vector<Batch>& batches,
                         const AnalysisConfig& analysis, const InterveneOptions& options) {
  torch::manual_seed(init_seed);
  CausalTransformer fresh(config);
  AnalysisConfig logit = analysis;
  logit.lens = "logit";
  return intervene_model(fresh, batches, logit, options, *logit_lens());
}

}  // namespace metalm
