#include "metalm/analysis/intervene.hpp"

#include <torch/utils.h>

#include <cmath>
#include <memory>
#include <string>

#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/inference.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/analysis/tuned_lens.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/hash.hpp"
#include "metalm/model/device.hpp"

namespace metalm {
namespace {

using json = nlohmann::json;

// State k's loss of an objective (the tuned lens reads each state through
// its own translator) as an objective of its own, for loss_and_grad.
class StateObjective final : public Objective {
 public:
  StateObjective(const Objective& o, size_t k) : o_(o), k_(k) {}
  at::Tensor loss(const at::Tensor& h, const at::Tensor& rows) const override { return o_.state_loss(k_, h, rows); }
  at::Tensor valid() const override { return o_.valid(); }
  std::unique_ptr<Objective> with_random_targets(uint64_t seed) const override { return o_.with_random_targets(seed); }

 private:
  const Objective& o_;
  size_t k_;
};

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

// Step k's lens gradient at the analysed positions: [N, d] double.
at::Tensor lens_gradient(const Objective& objective, size_t k, const at::Tensor& h, const at::Tensor& rows,
                         int64_t chunk) {
  if (chunk < 1) throw ConfigError("intervene: chunk must be at least 1, got " + std::to_string(chunk));
  const StateObjective view(objective, k);
  std::vector<at::Tensor> parts;
  for (int64_t i = 0; i < h.size(0); i += chunk) {
    const int64_t n = std::min(chunk, h.size(0) - i);
    parts.push_back(loss_and_grad(view, h.narrow(0, i, n), rows.narrow(0, i, n)).grad.to(at::kDouble));
  }
  if (parts.empty()) return at::zeros({0, h.size(1)}, h.options().dtype(at::kDouble));
  return at::cat(parts);
}

at::Tensor row_dot(const at::Tensor& a, const at::Tensor& b) { return (a * b).sum(1); }  // [N, d] x [N, d] -> [N]

// One step seen at the analysed positions, in float64: s_k, s_{k+1}, Δ_k and g.
struct StepView {
  at::Tensor state, next, update, grad;  // [N, d]
};

StepView view_step(const std::vector<at::Tensor>& states, size_t k, const Objective& objective, const at::Tensor& rows,
                   int64_t chunk) {
  const int64_t d = states[k].size(2);
  const at::Tensor h = states[k].reshape({-1, d}).index_select(0, rows);  // [N, d], the model's dtype
  StepView v;
  v.state = h.to(at::kDouble);
  v.next = states[k + 1].reshape({-1, d}).index_select(0, rows).to(at::kDouble);
  v.update = v.next - v.state;
  v.grad = lens_gradient(objective, k, h, rows, chunk);
  return v;
}

at::Tensor least_squares_step(const StepView& v) { return -row_dot(v.update, v.grad) / row_dot(v.grad, v.grad); }

}  // namespace

std::vector<at::Tensor> step_sizes(const std::vector<at::Tensor>& states, const Objective& objective, int64_t chunk) {
  check_states(states, objective);
  const at::Tensor rows = analysed_rows(objective);
  std::vector<at::Tensor> out;
  for (size_t k = 0; k + 1 < states.size(); ++k)
    out.push_back(least_squares_step(view_step(states, k, objective, rows, chunk)));
  return out;
}

at::Tensor random_directions(uint64_t seed, const at::Tensor& rows, int64_t length, int64_t step, int64_t d) {
  const at::Tensor r = rows.to(at::kLong).cpu().contiguous();
  const int64_t n = r.numel();
  at::Tensor out = at::empty({n, d}, at::TensorOptions(at::kDouble));
  const int64_t* row = r.data_ptr<int64_t>();
  double* z = out.data_ptr<double>();
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  constexpr double kUnit = 1.0 / 9007199254740992.0;  // 2^-53
  for (int64_t i = 0; i < n; ++i) {
    const int64_t b = row[i] / length, t = row[i] % length;
    for (int64_t j = 0; j < d; ++j) {
      const double u = static_cast<double>((mix(seed, b, t, step, 2 * j) >> 11) + 1) * kUnit;  // (0, 1]
      const double v = static_cast<double>(mix(seed, b, t, step, 2 * j + 1) >> 11) * kUnit;    // [0, 1)
      z[i * d + j] = std::sqrt(-2.0 * std::log(u)) * std::cos(kTwoPi * v);
    }
  }
  return out / out.norm(2, {1}, /*keepdim=*/true);
}

TrajectoryInterventions intervene_trajectory(const std::vector<at::Tensor>& states, const Objective& objective,
                                             const LossFromState& loss_from,
                                             const std::vector<double>& median_step_size,
                                             const std::vector<double>& alphas, uint64_t seed, int64_t chunk) {
  check_states(states, objective);
  const size_t K = states.size() - 1;
  if (median_step_size.size() != K)
    throw ShapeError("intervene: " + std::to_string(median_step_size.size()) + " median step sizes for " +
                     std::to_string(K) + " steps");
  const int64_t B = states[0].size(0), T = states[0].size(1), d = states[0].size(2);
  TrajectoryInterventions out;
  out.rows = analysed_rows(objective);
  const at::Tensor& rows = out.rows;
  auto loss_at_rows = [&](size_t j, const at::Tensor& state) {
    at::NoGradGuard no_grad;
    const at::Tensor loss = loss_from(j, state);  // [B, T]
    if (loss.dim() != 2 || loss.size(0) != B || loss.size(1) != T)
      throw ShapeError("intervene: the loss of a state must be [B, T]");
    return loss.reshape({-1}).index_select(0, rows).to(at::kDouble).cpu();
  };
  out.loss = loss_at_rows(K, states[K]);

  for (size_t k = 0; k < K; ++k) {
    const StepView v = view_step(states, k, objective, rows, chunk);
    // Edits are written from s_{k+1} where they remove a part of Δ, so that
    // removing nothing (α = 1) gives s_{k+1} bit for bit.
    const at::Tensor& s = v.state;
    const at::Tensor& next = v.next;
    const at::Tensor& delta = v.update;
    const at::Tensor& g = v.grad;
    // The loss change when the analysed positions of s_{k+1} become `edited`
    // ([N, d] double). A row whose edit is not finite keeps its state (so it
    // cannot spoil later positions through attention) and reports NaN.
    auto effect = [&](const at::Tensor& edited) {
      const at::Tensor finite = edited.isfinite().all(1);  // [N]
      const at::Tensor keep = finite.nonzero().reshape({-1});
      at::Tensor edited_state = states[k + 1].reshape({-1, d}).clone();  // [B*T, d]
      edited_state.index_copy_(0, rows.index_select(0, keep),
                               edited.index_select(0, keep).to(edited_state.scalar_type()));
      const at::Tensor change = loss_at_rows(k + 1, edited_state.reshape({B, T, d})) - out.loss;
      return at::where(finite.cpu(), change, at::full_like(change, NAN));
    };
    StepInterventions st;
    const at::Tensor along_g = row_dot(delta, g) / row_dot(g, g);  // [N]: proj_g(Δ) = along_g · g
    st.step_size = (-along_g).cpu();
    const at::Tensor energy = along_g * along_g * row_dot(g, g);  // ‖proj_g(Δ)‖²
    st.gradient_energy = energy.cpu();
    st.remove_gradient = effect(next - along_g.unsqueeze(1) * g);
    const at::Tensor r = random_directions(seed, rows, T, static_cast<int64_t>(k), d).to(s.device());
    const at::Tensor sign = at::where(row_dot(delta, r).lt(0), -at::ones_like(along_g), at::ones_like(along_g));
    st.remove_random = effect(next - (sign * energy.sqrt()).unsqueeze(1) * r);
    st.remove_radial = effect(next - (row_dot(delta, s) / row_dot(s, s)).unsqueeze(1) * s);
    st.gradient_step = effect(s + along_g.unsqueeze(1) * g);
    st.gradient_step_median = effect(s - median_step_size[k] * g);
    for (double alpha : alphas) st.line_search.push_back(effect(next + (alpha - 1.0) * delta));
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
}

namespace {

// Eval mode (no dropout: the trajectory and its continuation are the
// deterministic ones), the model's own mode restored on exit.
struct EvalMode {
  explicit EvalMode(CausalTransformer& m) : model(m), was_training(m->is_training()) { model->eval(); }
  ~EvalMode() { model->train(was_training); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;
  CausalTransformer& model;
  bool was_training;
};

// The next-token loss per position [B, T] of logits [B, T, V] (any value
// where target < 0), reduced in the logits' dtype and returned as float64.
at::Tensor next_token_loss(const at::Tensor& logits, const at::Tensor& targets) {
  const at::Tensor picked = logits.gather(-1, targets.clamp_min(0).unsqueeze(-1)).squeeze(-1);  // [B, T]
  return (at::logsumexp(logits, -1) - picked).to(at::kDouble);
}

// One batch's trajectory and the objective its steps are read through.
struct BatchContext {
  ModelTrajectory trajectory;
  at::Tensor targets;
  std::unique_ptr<Objective> objective;
};

BatchContext prepare_batch(CausalTransformer& model, const Batch& batch, size_t index, const AnalysisConfig& analysis,
                           const std::shared_ptr<const TunedLens>& lens) {
  if (batch.inputs.dim() != 2 || batch.inputs.sizes() != batch.targets.sizes())
    throw ShapeError("intervene: batch " + std::to_string(index) + " inputs and targets differ in shape");
  BatchContext c;
  const c10::Device device = model->device();
  c.targets = batch.targets.to(device);
  c.trajectory = capture_trajectory(model, batch.inputs.to(device), analysis.granularity);
  if (lens) {
    CausalTransformer handle = model;  // shares the module
    c.objective = std::make_unique<TunedLensObjective>(
        [handle](const at::Tensor& h) mutable { return handle->lens_logits(h); }, c.targets,
        model->config().vocab_size, lens, c.trajectory.names);
  } else {
    c.objective = std::make_unique<LensObjective>(make_lens_objective(model, c.targets));
  }
  return c;
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
                     const InterveneOptions& options) {
  check_intervene_options(options);
  if (batches.empty()) throw ShapeError("intervene: no batches");
  const ModelConfig& cfg = model->config();
  std::shared_ptr<const TunedLens> lens;
  if (const std::string path = analysis.tuned_lens_path(); !path.empty())
    lens = std::make_shared<const TunedLens>(load_tuned_lens(path, cfg));
  EvalMode eval(model);
  FullPrecisionScope exact;  // the states and their continuations in the parameters' dtype
  const Granularity granularity = analysis.granularity;
  const size_t K = static_cast<size_t>(granularity == Granularity::Sublayer ? 2 * cfg.n_layer : cfg.n_layer);

  // η̃ of a step is the median over every analysed position of every batch,
  // so a first pass measures the step sizes.
  std::vector<std::vector<at::Tensor>> etas(K);
  for (size_t b = 0; b < batches.size(); ++b) {
    const BatchContext c = prepare_batch(model, batches[b], b, analysis, lens);
    const std::vector<at::Tensor> e = step_sizes(c.trajectory.states, *c.objective, analysis.chunk);
    for (size_t k = 0; k < K; ++k) etas[k].push_back(e[k].cpu());
  }
  std::vector<double> median(K);
  for (size_t k = 0; k < K; ++k) median[k] = quantile(to_vector(at::cat(etas[k])), 0.5);

  std::vector<TrajectoryInterventions> parts;
  std::vector<at::Tensor> cluster;
  int64_t sequences = 0;
  for (size_t b = 0; b < batches.size(); ++b) {
    const BatchContext c = prepare_batch(model, batches[b], b, analysis, lens);
    const LossFromState loss_from = [&](size_t j, const at::Tensor& state) {
      return next_token_loss(model->forward_from(state, static_cast<int64_t>(j), granularity), c.targets);
    };
    // A different random direction per batch, reproducibly (modulo 2^64, like the seed itself).
    const uint64_t seed = static_cast<uint64_t>(analysis.seed) + b;
    parts.push_back(intervene_trajectory(c.trajectory.states, *c.objective, loss_from, median, options.alphas, seed,
                                         analysis.chunk));
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
  const std::vector<std::string> names = trajectory_names(cfg.n_layer, granularity);
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
  j["lens"] = analysis.lens;
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
  return intervene_model(fresh, batches, analysis, options);
}

}  // namespace metalm
