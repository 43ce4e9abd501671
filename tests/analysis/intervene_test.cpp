// Ground truth for the causal tests of docs/design.md 5.8: on the constructed
// linear in-context-regression layer (one gradient step) every intervention's
// effect has a closed form; on a real model the effect of removing the
// gradient part equals that of an independent forward pass (plain ATen from
// the named parameters, autograd for the lens gradient) with the edited state.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>

#include "../model/tiny_configs.hpp"
#include "lens_fixture.hpp"
#include "metalm/analysis/inference.hpp"
#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/intervene.hpp"
#include "metalm/analysis/linear_icl.hpp"
#include "metalm/analysis/tuned_lens.hpp"
#include "metalm/core/error.hpp"

namespace metalm {
namespace {

const auto kF64 = at::TensorOptions(at::kDouble);

double dot_value(const at::Tensor& a, const at::Tensor& b) { return (a * b).sum().item<double>(); }
double half_sq(const at::Tensor& a) { return 0.5 * dot_value(a, a); }

// The in-context regression of src/analysis/linear_icl.cpp with the query's
// y-slot starting at y0 (0: the one-gradient-step setting itself).
struct IclCase {
  int64_t B = 5, N = 40, dx = 3, dy = 2;
  double eta = 0.3;
  at::Tensor x, y, before, after, y0;  // x [B, N+1, dx], y [B, N+1, dy] (true y_q at N), y0 [B, dy]
  std::shared_ptr<SquaredLossObjective> objective;

  IclCase(double y0_scale, uint64_t seed) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    const at::Tensor w_star = at::normal(0.0, 1.0, {B, dy, dx}, gen, kF64);
    x = at::normal(0.0, 1.0, {B, N + 1, dx}, gen, kF64);
    y = at::matmul(x, w_star.transpose(1, 2));
    y0 = y0_scale * at::normal(0.0, 1.0, {B, dy}, gen, kF64);
    before = at::cat({x, y}, 2);
    before.select(1, N).narrow(1, dx, dy).copy_(y0);
    after = linear_self_attention(before, gd_step_weights(dx, dy, eta, N));
    const at::Tensor readout = at::eye(dx + dy, kF64).narrow(0, dx, dy);  // the y-slot
    at::Tensor valid = at::zeros({B, N + 1}, at::TensorOptions(at::kBool));
    valid.select(1, N).fill_(true);
    objective = std::make_shared<SquaredLossObjective>(readout, y, valid);
  }

  // After the layer nothing follows but the readout: the loss of a state is
  // the objective itself (of every stacked copy).
  LossFromState loss_from() const {
    auto o = objective;
    const int64_t n = B * (N + 1);
    return [o, n](size_t, const at::Tensor& state) {
      const int64_t copies = state.size(0) * state.size(1) / n;
      const at::Tensor rows = at::arange(n, at::TensorOptions(at::kLong)).repeat({copies});
      return o->loss(state.reshape({copies * n, -1}), rows).reshape({state.size(0), -1});
    };
  }
};

// Every effect of one query from the closed form: Δ = (0, u) with
// u = (η/N)(Σ_{i<N} y_i ⟨x_i, x_q⟩ + y0 ‖x_q‖²), ℓ(h) = ½‖h_y − y_q‖², so at
// s = (x_q, y0) the gradient is (0, w), w = y0 − y_q, and every edited
// state's loss is ½‖(its y-slot) − y_q‖².
struct ClosedForm {
  double eta, energy, remove_gradient, remove_random, remove_radial, gradient_step, gradient_step_median;
  std::vector<double> line_search;
};

ClosedForm closed_form(const IclCase& c, int64_t b, const at::Tensor& r, double median_eta,
                       const std::vector<double>& alphas) {
  const at::Tensor xq = c.x[b][c.N], yq = c.y[b][c.N], y0 = c.y0[b];
  const at::Tensor xs = c.x[b].narrow(0, 0, c.N), ys = c.y[b].narrow(0, 0, c.N);  // [N, dx], [N, dy]
  const at::Tensor u = c.eta / c.N * (at::matmul(ys.t(), at::matmul(xs, xq)) + y0 * dot_value(xq, xq));
  const at::Tensor w = y0 - yq;
  const double along = dot_value(u, w) / dot_value(w, w);
  const double base = half_sq(w + u);
  ClosedForm f;
  f.eta = -along;
  f.energy = along * along * dot_value(w, w);
  f.remove_gradient = half_sq(w + u - along * w) - base;
  const at::Tensor r_y = r.narrow(0, c.dx, c.dy);
  const double sign = dot_value(u, r_y) < 0 ? -1.0 : 1.0;  // ⟨Δ, r⟩ = ⟨u, r_y⟩
  f.remove_random = half_sq(w + u - sign * std::sqrt(f.energy) * r_y) - base;
  const double radial = dot_value(u, y0) / (dot_value(xq, xq) + dot_value(y0, y0));  // ⟨Δ, s⟩ / ‖s‖²
  f.remove_radial = half_sq((1 - radial) * y0 + u - yq) - base;
  f.gradient_step = half_sq((1 + along) * w) - base;
  f.gradient_step_median = half_sq((1 - median_eta) * w) - base;
  for (double a : alphas) f.line_search.push_back(half_sq(w + a * u) - base);
  return f;
}

void expect_closed_form(double y0_scale) {
  const IclCase c(y0_scale, 11);
  const std::vector<double> alphas{0.0, 0.5, 1.0, 1.5, 2.0};
  // η̃: the median of the closed-form step sizes (B is odd: the middle one).
  std::vector<double> etas;
  for (int64_t b = 0; b < c.B; ++b) etas.push_back(closed_form(c, b, at::zeros({c.dx + c.dy}, kF64), 0, {}).eta);
  std::sort(etas.begin(), etas.end());
  const double median = etas[c.B / 2];
  const uint64_t seed = 9;
  const TrajectoryInterventions got = intervene_trajectory({c.before, c.after}, *c.objective, c.loss_from(), {median},
                                                           alphas, seed, /*chunk=*/2, /*copies=*/4);
  ASSERT_EQ(got.rows.size(0), c.B);
  ASSERT_EQ(got.steps.size(), 1u);
  const at::Tensor r = random_directions(seed, got.rows, c.N + 1, 0, c.dx + c.dy);
  const StepInterventions& st = got.steps[0];
  for (int64_t b = 0; b < c.B; ++b) {
    const ClosedForm f = closed_form(c, b, r[b], median, alphas);
    EXPECT_NEAR(st.step_size[b].item<double>(), f.eta, 1e-6) << b;
    EXPECT_NEAR(st.gradient_energy[b].item<double>(), f.energy, 1e-6) << b;
    EXPECT_NEAR(st.remove_gradient[b].item<double>(), f.remove_gradient, 1e-6) << b;
    EXPECT_NEAR(st.remove_random[b].item<double>(), f.remove_random, 1e-6) << b;
    EXPECT_NEAR(st.remove_radial[b].item<double>(), f.remove_radial, 1e-6) << b;
    EXPECT_NEAR(st.gradient_step[b].item<double>(), f.gradient_step, 1e-6) << b;
    EXPECT_NEAR(st.gradient_step_median[b].item<double>(), f.gradient_step_median, 1e-6) << b;
    for (size_t a = 0; a < alphas.size(); ++a)
      EXPECT_NEAR(st.line_search[a][b].item<double>(), f.line_search[a], 1e-6) << b << " alpha " << alphas[a];
  }
}

TEST(Intervene, OneGradientStepLayerMatchesTheClosedForms) { expect_closed_form(0.0); }

TEST(Intervene, ShiftedQueryMatchesTheClosedFormsWithARadialPart) { expect_closed_form(0.7); }

TEST(Intervene, APositionWithoutAGradientKeepsItsStateAndReportsNaN) {
  IclCase c(0.0, 7);
  // Sequence 2's query already holds its target: ℓ = 0, g = 0, so the
  // gradient part (0/0) is not defined there.
  c.before.select(1, c.N).narrow(1, c.dx, c.dy)[2].copy_(c.y[2][c.N]);
  c.y0[2].copy_(c.y[2][c.N]);
  c.after = linear_self_attention(c.before, gd_step_weights(c.dx, c.dy, c.eta, c.N));
  const TrajectoryInterventions got =
      intervene_trajectory({c.before, c.after}, *c.objective, c.loss_from(), {0.1}, {1.0}, 3, 64, 1);
  const at::Tensor removed = got.steps[0].remove_gradient;
  EXPECT_TRUE(std::isnan(removed[2].item<double>()));
  EXPECT_EQ(removed.isfinite().sum().item<int64_t>(), c.B - 1);
  const ClosedForm f = closed_form(c, 0, at::zeros({c.dx + c.dy}, kF64), 0.1, {});
  EXPECT_NEAR(removed[0].item<double>(), f.remove_gradient, 1e-6);
}

TEST(Intervene, RandomDirectionsFollowTheDocumentedHash) {
  // Computed with the five lines of Python in metalm/core/hash.hpp and the
  // Box–Muller rule of intervene.hpp: seed 5, row 7 of length 4 (sequence 1,
  // position 3), step 2, d = 3.
  const at::Tensor r = random_directions(5, at::tensor({int64_t{7}}), 4, 2, 3);
  const double expected[] = {0.9792598424613008, 0.16030530897193432, -0.1239046764980285};
  for (int j = 0; j < 3; ++j) EXPECT_NEAR(r[0][j].item<double>(), expected[j], 1e-15) << j;
}

TEST(Intervene, RandomDirectionsAreUnitAndSpreadOverTheSphere) {
  const int64_t n = 4000, d = 8;
  const at::Tensor r = random_directions(1, at::arange(n, at::TensorOptions(at::kLong)), 50, 0, d);
  EXPECT_TRUE(at::allclose(r.norm(2, {1}), at::ones({n}, kF64), 0, 1e-12));
  // Uniform on the sphere: every coordinate has mean 0 and mean square 1/d.
  const at::Tensor mean_sq = (r * r).mean(0), mean = r.mean(0);
  EXPECT_LT((mean_sq - 1.0 / d).abs().max().item<double>(), 0.01);
  EXPECT_LT(mean.abs().max().item<double>(), 0.03);
  // Another step draws other directions.
  const at::Tensor other = random_directions(1, at::arange(n, at::TensorOptions(at::kLong)), 50, 1, d);
  EXPECT_LT((r * other).sum(1).abs().mean().item<double>(), 0.5);
}

// ---- a real model, against an independent forward pass ---------------------

// The model's forward pass written out from its named parameters: pre-LN
// GPT-2 with learned positions, softmax attention, LayerNorm and GELU (the
// tiny config of the model tests).
struct PlainGpt {
  std::map<std::string, at::Tensor> p;
  ModelConfig c;

  explicit PlainGpt(CausalTransformer& model) : c(model->config()) {
    for (const auto& kv : model->named_parameters()) p[kv.key()] = kv.value().detach();
  }
  at::Tensor ln(const at::Tensor& h, const std::string& name) const {
    return at::layer_norm(h, {c.d_model}, p.at(name + ".weight"), p.at(name + ".bias"), c.norm_eps);
  }
  at::Tensor linear(const at::Tensor& h, const std::string& name) const {
    return at::matmul(h, p.at(name + ".weight").t()) + p.at(name + ".bias");
  }
  at::Tensor embed(const at::Tensor& tokens) const {
    return p.at("wte.weight").index_select(0, tokens.reshape({-1})).reshape({tokens.size(0), tokens.size(1), -1}) +
           p.at("wpe.weight").narrow(0, 0, tokens.size(1));
  }
  at::Tensor block(const at::Tensor& x, int64_t l) const {
    const std::string b = "blocks." + std::to_string(l);
    const int64_t B = x.size(0), T = x.size(1), H = c.n_head, hs = c.d_model / c.n_head;
    const at::Tensor qkv = linear(ln(x, b + ".ln_1"), b + ".attn.c_attn");  // [B, T, 3d]
    auto heads = [&](int64_t i) {  // q, k, v: [B, T, 3d] -> [B, H, T, hs]
      return qkv.narrow(2, i * c.d_model, c.d_model).reshape({B, T, H, hs}).transpose(1, 2);
    };
    at::Tensor scores = at::matmul(heads(0), heads(1).transpose(2, 3)) / std::sqrt(static_cast<double>(hs));
    scores = scores.masked_fill(at::ones({T, T}, at::TensorOptions(at::kBool)).triu(1), -INFINITY);
    const at::Tensor y = at::matmul(at::softmax(scores, -1), heads(2)).transpose(1, 2).reshape({B, T, c.d_model});
    const at::Tensor mid = x + linear(y, b + ".attn.c_proj");
    return mid + linear(at::gelu(linear(ln(mid, b + ".ln_2"), b + ".mlp.c_fc")), b + ".mlp.c_proj");
  }
  at::Tensor readout(const at::Tensor& h) const { return at::matmul(ln(h, "ln_f"), p.at("wte.weight").t()); }
  // Runs blocks first … L−1 from resid_pre[first], then the readout.
  at::Tensor logits_from(at::Tensor x, int64_t first) const {
    for (int64_t l = first; l < c.n_layer; ++l) x = block(x, l);
    return readout(x);
  }
};

at::Tensor cross_entropy_rows(const at::Tensor& logits, const at::Tensor& targets) {  // [N, V], [N] -> [N]
  return -at::log_softmax(logits, -1).gather(1, targets.unsqueeze(1)).squeeze(1);
}

// The tiny model in float64 and eval mode, its weights drawn after manual_seed(seed).
CausalTransformer tiny_double_model(uint64_t seed) {
  torch::manual_seed(seed);
  CausalTransformer model(testing::tiny_config());
  model->to(at::kDouble);
  model->eval();
  return model;
}

TEST(Intervene, RemovingTheGradientPartMatchesAnIndependentForwardPass) {
  CausalTransformer model = tiny_double_model(4);
  Batch batch = testing::random_token_batch(3, 9, 19, 5);
  batch.targets[1][4] = -1;  // a position without a target keeps its state, which later positions read
  AnalysisConfig analysis;
  analysis.seed = 21;
  InterveneOptions options;
  options.resamples = 50;
  const nlohmann::json got = intervene_model(model, {batch}, analysis, options);

  const PlainGpt plain(model);
  const at::Tensor valid = batch.targets.reshape({-1}).ge(0);
  const at::Tensor rows = valid.nonzero().reshape({-1});
  const at::Tensor targets = batch.targets.reshape({-1}).index_select(0, rows);
  std::vector<at::Tensor> states{plain.embed(batch.inputs)};
  for (int64_t l = 0; l < 3; ++l) states.push_back(plain.block(states.back(), l));
  const at::Tensor own = cross_entropy_rows(plain.readout(states[3]).reshape({-1, 19}).index_select(0, rows), targets);
  const at::Tensor model_logits = model->forward(batch.inputs).reshape({-1, 19}).index_select(0, rows);
  ASSERT_TRUE(at::allclose(own, cross_entropy_rows(model_logits, targets), 0, 1e-12))
      << "the plain forward pass is not the model's";
  EXPECT_NEAR(got["final_loss"].get<double>(), own.mean().item<double>(), 1e-10);

  for (int64_t k = 0; k < 3; ++k) {
    const at::Tensor s = states[k].reshape({-1, 16}).index_select(0, rows);
    const at::Tensor delta = states[k + 1].reshape({-1, 16}).index_select(0, rows) - s;
    at::Tensor leaf = s.clone().set_requires_grad(true);
    const at::Tensor g = torch::autograd::grad({cross_entropy_rows(plain.readout(leaf), targets).sum()}, {leaf})[0];
    const at::Tensor removed = delta - ((delta * g).sum(1, true) / (g * g).sum(1, true)) * g;
    const at::Tensor radial = delta - ((delta * s).sum(1, true) / (s * s).sum(1, true)) * s;
    auto change = [&](const at::Tensor& update) {  // [N]
      at::Tensor next = states[k + 1].reshape({-1, 16}).clone();
      next.index_copy_(0, rows, s + update);
      const at::Tensor logits = plain.logits_from(next.reshape({3, 9, 16}), k + 1).reshape({-1, 19});
      return cross_entropy_rows(logits.index_select(0, rows), targets) - own;
    };
    const nlohmann::json& st = got["steps"][k];
    const at::Tensor without_gradient = change(removed);
    EXPECT_NEAR(st["remove_gradient"]["mean"].get<double>(), without_gradient.mean().item<double>(), 1e-10) << k;
    EXPECT_NEAR(st["remove_radial"]["mean"].get<double>(), change(radial).mean().item<double>(), 1e-10) << k;
    EXPECT_NEAR(st["line_search"][0]["mean"].get<double>(), change(at::zeros_like(delta)).mean().item<double>(), 1e-10)
        << k;
    EXPECT_EQ(st["line_search"][2]["mean"].get<double>(), 0.0) << k;  // α = 1 is s_{k+1} itself, bit for bit
    // The interval resamples whole sequences (row / T) with the run's seed.
    const Interval ci = ClusterBootstrap(rows.div(9, "floor"), 50, 21).mean_interval(without_gradient);
    EXPECT_NEAR(st["remove_gradient"]["lo"].get<double>(), ci.lo, 1e-10) << k;
    EXPECT_NEAR(st["remove_gradient"]["hi"].get<double>(), ci.hi, 1e-10) << k;
  }
}

// The loss of intervene_model: forward_from, then the model's own next-token
// loss of every stacked copy.
LossFromState model_loss_from(CausalTransformer& model, const Batch& batch, Granularity g) {
  return [&model, &batch, g](size_t j, const at::Tensor& state) {
    const at::Tensor logits = model->forward_from(state, static_cast<int64_t>(j), g);
    const at::Tensor targets = batch.targets.repeat({state.size(0) / batch.targets.size(0), 1}).clamp_min(0);
    return (at::logsumexp(logits, -1) - logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)).to(at::kDouble);
  };
}

// The interventions of one batch of `model` with `copies` edited states per
// partial forward pass.
TrajectoryInterventions intervene_batch(CausalTransformer& model, const Batch& batch, Granularity g, int64_t copies) {
  const ModelTrajectory mt = capture_trajectory(model, batch.inputs, g);
  const LensObjective objective = make_lens_objective(model, batch.targets);
  const std::vector<double> median(mt.states.size() - 1, 0.7);
  return intervene_trajectory(mt.states, objective, model_loss_from(model, batch, g), median, {0.0, 0.5, 1.0, 2.0},
                              5, 7, copies);
}

// The largest difference between two runs' effects (NaN where both are NaN).
double max_difference(const TrajectoryInterventions& a, const TrajectoryInterventions& b) {
  double worst = 0;
  auto compare = [&](const at::Tensor& x, const at::Tensor& y) {
    EXPECT_TRUE(at::equal(x.isnan(), y.isnan()));
    const at::Tensor both = x.isfinite() & y.isfinite();
    if (both.any().item<bool>()) worst = std::max(worst, (x - y).masked_select(both).abs().max().item<double>());
  };
  compare(a.loss, b.loss);
  for (size_t k = 0; k < a.steps.size(); ++k) {
    for (const auto& iv : kInterventions) compare(a.steps[k].*iv.member, b.steps[k].*iv.member);
    for (size_t i = 0; i < a.steps[k].line_search.size(); ++i)
      compare(a.steps[k].line_search[i], b.steps[k].line_search[i]);
  }
  return worst;
}

TEST(Intervene, StackedEditsGiveTheEffectsOfOneAtATime) {
  // Nine edits per step (five interventions, four alphas, one of them the
  // unchanged α = 1): one forward pass per edit, four at a time (the last
  // pass holds one), and all at once.
  for (auto dtype : {at::kDouble, at::kFloat})
    for (auto g : {Granularity::Block, Granularity::Sublayer}) {
      torch::manual_seed(8);
      CausalTransformer model(testing::tiny_config());
      model->to(dtype);
      model->eval();
      Batch batch = testing::random_token_batch(3, 10, 19, 6);
      batch.targets[2][3] = -1;
      const TrajectoryInterventions one = intervene_batch(model, batch, g, 1);
      for (int64_t copies : {4, 9}) {
        const double diff = max_difference(one, intervene_batch(model, batch, g, copies));
        std::printf("stacked %lld (%s, %s): max |difference| %.3g nats\n", static_cast<long long>(copies),
                    dtype == at::kDouble ? "float64" : "float32", to_string(g).c_str(), diff);
        EXPECT_LT(diff, dtype == at::kDouble ? 1e-12 : 1e-5) << copies;
      }
      for (const auto& st : one.steps) EXPECT_TRUE(at::equal(st.line_search[2], at::zeros_like(st.line_search[2])));
    }
}

TEST(Intervene, TheCallersLensGradientsGiveTheSameEffectsAsItsOwn) {
  // intervene_model hands down the gradients its first pass computed
  // (lens_gradients); they must be the ones intervene_trajectory computes.
  CausalTransformer model = tiny_double_model(9);
  Batch batch = testing::random_token_batch(3, 10, 19, 7);
  batch.targets[1][4] = -1;
  const ModelTrajectory mt = capture_trajectory(model, batch.inputs, Granularity::Block);
  const LensObjective objective = make_lens_objective(model, batch.targets);
  const LossFromState loss_from = model_loss_from(model, batch, Granularity::Block);
  const std::vector<double> median(mt.states.size() - 1, 0.4);
  const std::vector<at::Tensor> grads = lens_gradients(mt.states, objective, 7);  // the same chunk
  ASSERT_EQ(grads.size(), mt.states.size() - 1);
  EXPECT_EQ(grads[0].size(0), 29);  // 3 x 10 positions, one without a target
  const TrajectoryInterventions own =
      intervene_trajectory(mt.states, objective, loss_from, median, {0.0, 2.0}, 5, 7, 1);
  const TrajectoryInterventions handed =
      intervene_trajectory(mt.states, objective, loss_from, median, {0.0, 2.0}, 5, 7, 1, grads);
  EXPECT_EQ(max_difference(own, handed), 0.0);
  // The step sizes are those of the same gradients: η = −⟨Δ, g⟩ / ‖g‖².
  const std::vector<at::Tensor> etas = step_sizes(mt.states, objective, 7);
  EXPECT_TRUE(at::allclose(etas[1], own.steps[1].step_size, 1e-12, 1e-12));
  // A gradient list of the wrong length or shape is refused.
  std::vector<at::Tensor> short_list(grads.begin(), grads.end() - 1);
  EXPECT_THROW(intervene_trajectory(mt.states, objective, loss_from, median, {0.0}, 5, 7, 1, short_list), ShapeError);
  std::vector<at::Tensor> narrow = grads;
  narrow[0] = narrow[0].narrow(0, 0, 28);
  EXPECT_THROW(intervene_trajectory(mt.states, objective, loss_from, median, {0.0}, 5, 7, 1, narrow), ShapeError);
}

TEST(Intervene, ThroughATunedLensTheEditIsOfTheTranslatedStates) {
  // As the analysis reads a tuned lens (docs/design.md 5.2): u_k = A_k s_k + b_k,
  // g = ∇ℓ(u_k) of the one logit lens, Δ = u_{k+1} − u_k; the edited reading
  // u' of state k+1 is the model state s' = A_{k+1}⁻¹ (u' − b_{k+1}) (`final`: u').
  torch::manual_seed(4);
  CausalTransformer model(testing::tiny_config());
  model->to(at::kDouble);
  model->eval();
  const Batch batch = testing::random_token_batch(3, 9, 19, 5);
  const TunedLens translators = testing::perturbed_tuned_lens(3, 16, 2);
  AnalysisConfig analysis;
  InterveneOptions options;
  options.resamples = 20;
  const nlohmann::json logit = intervene_model(model, {batch}, analysis, options);
  analysis.lens = "tuned:t";
  EXPECT_THROW(intervene_model(model, {batch}, analysis, options), ConfigError);  // the lens not handed down
  const nlohmann::json got = intervene_model(model, {batch}, analysis, options, *tuned_lens(translators, "tuned:t"));
  EXPECT_EQ(got["lens"], "tuned:t");

  const ModelTrajectory mt = capture_trajectory(model, batch.inputs, Granularity::Block);
  const int64_t n = 27, d = 16;
  const at::Tensor targets = batch.targets.reshape({-1});
  auto loss_of = [&](const at::Tensor& logits) {  // [B, T, V] -> [n]
    return -at::log_softmax(logits.reshape({n, -1}), -1).gather(1, targets.unsqueeze(1)).squeeze(1);
  };
  auto reading = [&](size_t k) {  // u_k [n, d] in double, by hand
    const at::Tensor s = mt.states[k].reshape({n, d});
    if (mt.names[k] == "final") return s;
    const Translator& t = translators.translators.at(mt.names[k]);
    return at::matmul(s, t.weight.to(at::kDouble).t()) + t.bias.to(at::kDouble);
  };
  auto state_of = [&](size_t k, const at::Tensor& u) {  // s with reading u
    if (mt.names[k] == "final") return u;
    const Translator& t = translators.translators.at(mt.names[k]);
    return at::linalg_solve(t.weight.to(at::kDouble), (u - t.bias.to(at::kDouble)).t()).t();
  };
  const at::Tensor own = loss_of(mt.logits);
  for (size_t k = 0; k < 3; ++k) {
    const at::Tensor u0 = reading(k), u1 = reading(k + 1), delta = u1 - u0;
    at::Tensor leaf = u0.clone().set_requires_grad(true);
    const at::Tensor lens_loss =
        -at::log_softmax(model->lens_logits(leaf), -1).gather(1, targets.unsqueeze(1)).squeeze(1);
    const at::Tensor g = torch::autograd::grad({lens_loss.sum()}, {leaf})[0];
    const at::Tensor edited = u1 - ((delta * g).sum(1, true) / (g * g).sum(1, true)) * g;
    at::NoGradGuard no_grad;
    const at::Tensor s = state_of(k + 1, edited).reshape({3, 9, d});
    const at::Tensor change = loss_of(model->forward_from(s, static_cast<int64_t>(k + 1), Granularity::Block)) - own;
    const nlohmann::json& st = got["steps"][k];
    EXPECT_NEAR(st["remove_gradient"]["mean"].get<double>(), change.mean().item<double>(), 1e-9) << k;
    EXPECT_NEAR(st["step_size_median"].get<double>(),
                at::median(-(delta * g).sum(1) / (g * g).sum(1)).item<double>(), 1e-9) << k;
    EXPECT_EQ(st["line_search"][2]["mean"].get<double>(), 0.0) << k;
    // Not the logit lens's numbers: the translators change what is removed.
    if (k + 1 < 3) {
      EXPECT_GT(std::abs(st["remove_gradient"]["mean"].get<double>() -
                         logit["steps"][k]["remove_gradient"]["mean"].get<double>()),
                1e-6)
          << k;
    }
  }
}

TEST(Intervene, JsonNamesItsFormatAndEveryIntervention) {
  torch::manual_seed(4);
  CausalTransformer model(testing::tiny_config());
  AnalysisConfig analysis;
  analysis.granularity = Granularity::Sublayer;
  InterveneOptions options;
  options.alphas = {0.0, 1.0};
  options.resamples = 20;
  const nlohmann::json j = intervene_model(model, {testing::random_token_batch(2, 6, 19, 1)}, analysis, options);
  EXPECT_EQ(j["format"], kInterveneFormat);
  EXPECT_EQ(j["version"], kInterveneVersion);
  EXPECT_EQ(j["tokens"], 12);
  EXPECT_EQ(j["bootstrap"]["resamples"], 20);
  ASSERT_EQ(j["steps"].size(), 6u);
  EXPECT_EQ(j["steps"][1]["kind"], "mlp");
  for (const auto& iv : kInterventions) EXPECT_EQ(j["steps"][5][iv.key]["n"], 12) << iv.key;
  EXPECT_EQ(j["steps"][0]["line_search"].size(), 2u);
  EXPECT_TRUE(model->is_training());  // its mode restored
}

TEST(Intervene, RefusesBadOptions) {
  InterveneOptions o;
  o.alphas = {};
  EXPECT_THROW(check_intervene_options(o), ConfigError);
  o.alphas = {NAN};
  EXPECT_THROW(check_intervene_options(o), ConfigError);
  o.alphas = {1.0};
  o.resamples = 0;
  EXPECT_THROW(check_intervene_options(o), ConfigError);
}

}  // namespace
}  // namespace metalm
