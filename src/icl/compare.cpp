#include "metalm/icl/compare.hpp"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>

#include "metalm/analysis/objective.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/analysis/trajectory.hpp"
#include "metalm/core/error.hpp"

namespace metalm::icl {
namespace {

constexpr const char* kFormat = "metalm-icl-compare";
constexpr int kVersion = 2;  // 2: loss_vs_n; interpolation_loss for every constructed reference

// Row-wise cosine of [B, k] tensors (0/0 gives NaN, left out of means).
at::Tensor row_cosine(const at::Tensor& a, const at::Tensor& b) {
  return (a * b).sum(1) / (a.norm(2, 1) * b.norm(2, 1));
}

double finite_mean(const at::Tensor& v) {
  const at::Tensor f = v.masked_select(v.isfinite());
  return f.numel() ? f.mean().item<double>() : std::nan("");
}

// Mean and a normal-approximation 95 % interval of the mean.
nlohmann::json mean_interval(const at::Tensor& v) {
  const at::Tensor f = v.masked_select(v.isfinite()).to(at::kDouble);
  if (f.numel() < 2) return {{"mean", number(finite_mean(v))}, {"ci95", nullptr}, {"n", f.numel()}};
  const double mean = f.mean().item<double>();
  const double half = 1.96 * f.std(/*unbiased=*/true).item<double>() / std::sqrt(static_cast<double>(f.numel()));
  return {{"mean", number(mean)}, {"ci95", {number(mean - half), number(mean + half)}}, {"n", f.numel()}};
}

// The loss at α = ½ between the trained linear 1-head model and the
// construction of a reference with one layer per step (GD, GD-K, GD++,
// preconditioned steps), after putting each layer of both in the same gauge:
// (W_KQ, W_PV) → (c W_KQ, W_PV / c) and (−W_KQ, −W_PV) compute the same
// layer, so each pair is scaled to ‖W_KQ‖ = ‖W_PV‖ and the trained one's sign
// chosen to agree with the construction's W_KQ (docs/design.md 8.4). NaN
// when the reference has no construction of the model's depth.
double interpolation_loss(IclTransformerImpl& model, const Reference& r, const std::vector<double>& params,
                          const TaskBatch& test) {
  const ModelOptions& o = model.options;
  const std::vector<ConstructedStep> steps = r.construction(params, o.d_x);
  if (static_cast<int64_t>(steps.size()) != o.layers || o.heads != 1 || o.attention != Attention::Linear)
    return std::nan("");
  torch::NoGradGuard no_grad;
  IclTransformer construction(o), mid(o);
  auto balanced = [](const torch::Tensor& kq, const torch::Tensor& pv) {
    const double c = std::sqrt(pv.norm().item<double>() / kq.norm().item<double>());
    return std::make_pair(kq * c, pv / c);
  };
  for (int64_t l = 0; l < o.layers; ++l) {
    const ConstructedStep& s = steps[static_cast<size_t>(l)];
    set_gd_step(*construction, l, s.eta, s.preconditioner.to(at::kFloat), s.gamma);
    auto [kq_alg, pv_alg] = balanced(construction->w_kq[l], construction->w_pv[l]);
    auto [kq_tf, pv_tf] = balanced(model.w_kq[l], model.w_pv[l]);
    if ((kq_tf * kq_alg).sum().item<double>() < 0) kq_tf = -kq_tf, pv_tf = -pv_tf;
    mid->w_kq[l].copy_((kq_tf + kq_alg) / 2);
    mid->w_pv[l].copy_((pv_tf + pv_alg) / 2);
  }
  return prediction_loss(mid->forward(tokens(test, at::kFloat)), test);
}

// The trained 1-layer 1-head linear model's weights against the construction:
// its effective preconditioner Γ = −mean(diag W_PV[y, y]) · W_KQ[x, x] and
// the share of each matrix's norm outside the blocks a GD step uses.
nlohmann::json weight_comparison(IclTransformerImpl& model, const std::vector<Tuned>& tuned) {
  const ModelOptions& o = model.options;
  if (o.layers != 1 || o.heads != 1 || o.attention != Attention::Linear) return nullptr;
  torch::NoGradGuard no_grad;
  const at::Tensor kq = model.w_kq[0][0].to(at::kDouble), pv = model.w_pv[0][0].to(at::kDouble);
  const at::Tensor kq_xx = kq.narrow(0, 0, o.d_x).narrow(1, 0, o.d_x);
  const at::Tensor pv_yy = pv.narrow(0, o.d_x, o.d_y).narrow(1, o.d_x, o.d_y);
  const at::Tensor gamma = -pv_yy.diagonal().mean() * kq_xx;  // [d_x, d_x]
  auto outside = [](const at::Tensor& m, const at::Tensor& block) {
    return std::sqrt(std::max(0.0, 1 - block.pow(2).sum().item<double>() / m.pow(2).sum().item<double>()));
  };
  nlohmann::json out{{"gamma_diagonal", numbers(to_vector(gamma.diagonal()))},
                     {"kq_norm_outside_xx", number(outside(kq, kq_xx))},
                     {"pv_norm_outside_yy", number(outside(pv, pv_yy))},
                     {"pv_yy_offdiagonal_share", number(outside(pv_yy, pv_yy.diagonal()))}};
  nlohmann::json against = nlohmann::json::object();
  for (const Tuned& t : tuned) {
    const at::Tensor p = t.reference->one_step_preconditioner(o.d_x);
    if (!p.defined()) continue;
    const at::Tensor target = t.params.at(0) * p;
    against[t.reference->name()] = number((gamma - target).norm().item<double>() / target.norm().item<double>());
  }
  out["gamma_relative_distance"] = against;
  return out;
}

// The in-context gradient read from a state [B, N+1, D]: with the
// context's x-slots X and y-slots R (residuals y_i − Ŵ x_i in a GD stack),
// C = RᵀX / N, so a GD step of size η adds η C x_q to the prediction.
at::Tensor context_gradient(const at::Tensor& state, int64_t d_x) {
  const int64_t n = state.size(1) - 1;
  const at::Tensor context = state.narrow(1, 0, n);
  const at::Tensor x = context.narrow(2, 0, d_x), r = context.narrow(2, d_x, state.size(2) - d_x);
  return at::matmul(r.transpose(1, 2), x) / static_cast<double>(n);  // [B, d_y, d_x]
}

// ∂(layer l's update of the query's y-slot) / ∂(the query's x-slot), the
// context held as it is (the query is never a key): [B, d_y, d_x], by autograd.
at::Tensor update_map(IclTransformerImpl& model, int64_t l, const at::Tensor& state) {
  const int64_t n = state.size(1) - 1, d_x = model.options.d_x, d_y = model.options.d_y;
  const at::Tensor x_q = state.select(1, n).narrow(1, 0, d_x).to(at::kFloat).detach().requires_grad_(true);
  const at::Tensor query = at::cat({x_q, state.select(1, n).narrow(1, d_x, d_y).to(at::kFloat)}, 1).unsqueeze(1);
  const at::Tensor e = at::cat({state.narrow(1, 0, n).to(at::kFloat), query}, 1);                   // [B, N+1, D]
  const at::Tensor dy = (model.layer(l, e) - e).select(1, n).narrow(1, d_x, d_y);                 // [B, d_y]
  std::vector<at::Tensor> rows;
  for (int64_t j = 0; j < d_y; ++j)
    rows.push_back(torch::autograd::grad({dy.select(1, j).sum()}, {x_q}, {}, /*retain_graph=*/true)[0]);
  return at::stack(rows, 1).to(at::kDouble);
}

// The test loss of the model and of every reference (hyper-parameters as
// tuned at the training N, like the model's weights) on tasks with other
// context sizes: {"n": [...], "model": [...], "references": {NAME: [...]}}.
nlohmann::json loss_vs_context_size(IclTransformerImpl& model, const TaskOptions& task, uint64_t seed,
                                    const std::vector<Tuned>& tuned, const CompareOptions& options) {
  const std::vector<int64_t> sizes =
      options.context_sizes.empty() ? default_context_sizes(task.n) : options.context_sizes;
  nlohmann::json model_loss = nlohmann::json::array(), refs = nlohmann::json::object();
  for (const Tuned& t : tuned) refs[t.reference->name()] = nlohmann::json::array();
  for (size_t k = 0; k < sizes.size(); ++k) {
    TaskOptions at_n = task;
    at_n.n = sizes[k];
    // Test-stream indices from 2 on: 0 is the trainer's held-out batch, 1 the comparison's.
    const TaskBatch b = sample_tasks(at_n, seed, Stream::Test, 2 + static_cast<int64_t>(k), options.tasks);
    {
      torch::NoGradGuard no_grad;
      model_loss.push_back(number(prediction_loss(model.forward(tokens(b, at::kFloat)), b)));
    }
    for (const Tuned& t : tuned)
      refs[t.reference->name()].push_back(number(prediction_loss(predict(*t.reference, b, t.params), b)));
  }
  return {{"n", sizes}, {"model", model_loss}, {"references", refs}};
}

}  // namespace

std::vector<int64_t> default_context_sizes(int64_t n) {
  std::vector<int64_t> out;
  for (double f : {0.2, 0.5, 1.0, 2.0, 4.0, 8.0}) {
    const int64_t m = std::max<int64_t>(1, std::llround(f * static_cast<double>(n)));
    if (out.empty() || m > out.back()) out.push_back(m);
  }
  return out;
}

at::Tensor model_sensitivity(IclTransformerImpl& model, const TaskBatch& b) {
  TaskBatch leaf = b;
  leaf.x_q = b.x_q.detach().clone().requires_grad_(true);
  const torch::Tensor y = model.forward(tokens(leaf, at::kFloat));  // [B, d_y]
  std::vector<at::Tensor> rows;
  for (int64_t j = 0; j < y.size(1); ++j)  // tasks are independent: one pass gives row j of every task
    rows.push_back(torch::autograd::grad({y.select(1, j).sum()}, {leaf.x_q}, {}, /*retain_graph=*/true)[0]);
  return at::stack(rows, 1).to(at::kDouble);  // [B, d_y, d_x]
}

ReferenceComparison compare_predictions(const at::Tensor& y_model, const at::Tensor& sensitivity_model,
                                        const Reference& r, const std::vector<double>& params, const TaskBatch& test) {
  const at::Tensor w = r.predictor(test, params);                           // [B, d_y, d_x]
  const at::Tensor y_alg = at::matmul(w, test.x_q.unsqueeze(2)).squeeze(2);  // [B, d_y]
  const at::Tensor y_tf = y_model.to(at::kDouble);
  ReferenceComparison c;
  c.loss = prediction_loss(y_alg, test);
  c.prediction_difference = (y_tf - y_alg).pow(2).mean().item<double>();
  c.prediction_cosine = row_cosine(y_tf.reshape({1, -1}), y_alg.reshape({1, -1})).item<double>();
  c.sensitivity_cosine = finite_mean(row_cosine(sensitivity_model.flatten(1), w.flatten(1)));
  return c;
}

nlohmann::json analyse_model(IclTransformerImpl& model, const TaskBatch& test, const at::Tensor& preconditioner,
                             uint64_t seed) {
  const ModelOptions& o = model.options;
  const int64_t B = test.size(), N = test.x.size(1), T = N + 1, D = o.d_x + o.d_y;
  std::vector<at::Tensor> states;
  std::vector<std::string> names;
  {
    torch::NoGradGuard no_grad;  // the analyser takes its own gradients, of the states
    for (const torch::Tensor& s : model.states(tokens(test, at::kFloat))) {
      names.push_back("resid_" + std::to_string(states.size()));
      states.push_back(s.to(at::kDouble));
    }
  }
  // ℓ(h) = ½ ‖R h − y_q‖² at the query, R = −(the y-slot), the model's own readout.
  const at::Tensor readout = -at::eye(D, at::kDouble).narrow(0, o.d_x, o.d_y);  // [d_y, D]
  at::Tensor targets = at::zeros({B, T, o.d_y}, at::kDouble);
  targets.select(1, N).copy_(test.y_q);
  at::Tensor valid = at::zeros({B, T}, at::TensorOptions(at::kBool));
  valid.select(1, N).fill_(true);
  const SquaredLossObjective objective(readout, targets, valid);
  AnalysisConfig config;
  config.seed = static_cast<int64_t>(seed);
  const Trajectory tr = analyze_trajectory(states, names, objective, config);

  const at::Tensor p = preconditioner.to(at::kDouble);
  nlohmann::json steps = nlohmann::json::array();
  for (size_t k = 0; k + 1 < states.size(); ++k) {
    const StepRecord& st = tr.steps.at(k);
    const at::Tensor g2 = st.norm_grad.pow(2);
    const double pooled = (st.step_size * g2).sum().item<double>() / g2.sum().item<double>();
    const at::Tensor delta = (states[k + 1] - states[k]).select(1, N);  // [B, D]
    const at::Tensor readout_share = delta.narrow(1, o.d_x, o.d_y).norm(2, 1) / delta.norm(2, 1);
    // The layer's map from the query's x-slot to its y-slot update, against
    // the GD step read from the state: −C and −C P (docs/design.md 8.5).
    const at::Tensor map = update_map(model, static_cast<int64_t>(k), states[k]).flatten(1);  // [B, d_y·d_x]
    const at::Tensor c = context_gradient(states[k], o.d_x);                                  // [B, d_y, d_x]
    const at::Tensor plain = row_cosine(map, -c.flatten(1));
    const at::Tensor pre = row_cosine(map, -at::matmul(c, p).flatten(1));
    steps.push_back({{"layer", static_cast<int64_t>(k)},
                     {"alignment", to_json(summarize(st.alignment))},
                     {"step_size", to_json(summarize(st.step_size))},
                     {"step_size_pooled", number(pooled)},
                     {"readout_share", number(finite_mean(readout_share))},
                     {"loss_before", number(summarize(st.loss_before).mean)},
                     {"loss_after", number(summarize(st.loss_after).mean)},
                     {"alignment_context_gradient", mean_interval(plain)},
                     {"alignment_preconditioned", mean_interval(pre)},
                     {"preconditioned_minus_plain", mean_interval(pre - plain)}});
  }
  return {{"objective", "squared loss of the query's prediction -y_slot against y_q"}, {"steps", steps}};
}

nlohmann::json compare_with_references(IclTransformerImpl& model, const IclConfig& config,
                                       const CompareOptions& options) {
  if (options.tasks < 2 || options.tune_tasks < 2) throw ConfigError("icl-compare: needs at least 2 tasks");
  for (int64_t n : options.context_sizes)
    if (n < 1 || n > (1 << 20)) throw ConfigError("icl-compare: every context size must be 1 to 1048576");
  const TaskOptions& task = config.task.task;
  const uint64_t seed = static_cast<uint64_t>(config.train.seed);
  const TaskBatch tune_set = sample_tasks(task, seed, Stream::Tune, 0, options.tune_tasks);
  const TaskBatch test = sample_tasks(task, seed, Stream::Test, 1, options.tasks);  // index 1: not the trainer's held-out batch

  at::Tensor y_model;
  {
    torch::NoGradGuard no_grad;
    y_model = model.forward(tokens(test, at::kFloat)).to(at::kDouble);
  }
  const at::Tensor sensitivity = model_sensitivity(model, test);

  std::vector<Tuned> tuned;
  nlohmann::json refs = nlohmann::json::array();
  for (const auto& r : standard_references(task, config.model.layers)) {
    const Tuned t = tune(r, tune_set);
    const ReferenceComparison c = compare_predictions(y_model, sensitivity, *r, t.params, test);
    nlohmann::json params = nlohmann::json::object();
    const auto names = r->param_names();
    for (size_t i = 0; i < names.size(); ++i) params[names[i]] = t.params[i];
    refs.push_back({{"name", r->name()},
                    {"params", params},
                    {"tuning_loss", number(t.tuning_loss)},
                    {"loss", number(c.loss)},
                    {"prediction_difference", number(c.prediction_difference)},
                    {"prediction_cosine", number(c.prediction_cosine)},
                    {"sensitivity_cosine", number(c.sensitivity_cosine)},
                    {"interpolation_loss", number(interpolation_loss(model, *r, t.params, test))}});
    tuned.push_back(t);
  }
  return {{"format", kFormat},
          {"version", kVersion},
          {"tasks", options.tasks},
          {"tune_tasks", options.tune_tasks},
          {"model", {{"loss", number(prediction_loss(y_model, test))},
                     {"loss_zero", number(prediction_loss(at::zeros_like(y_model), test))}}},
          {"references", refs},
          {"weights", weight_comparison(model, tuned)},
          {"loss_vs_n", loss_vs_context_size(model, task, seed, tuned, options)},
          {"analysis", analyse_model(model, test, optimal_preconditioner(task), seed + 1)}};
}

}  // namespace metalm::icl
