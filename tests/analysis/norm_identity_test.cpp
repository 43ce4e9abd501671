// The norm identity (docs/design.md 5.3, 5.4): a scale-invariant final norm
// makes the lens loss degree-0 homogeneous in the state, so its gradient is
// orthogonal to the state (and, for LayerNorm, to the all-ones vector);
// ‖s_{k+1}‖² − ‖s_k‖² splits exactly into 2⟨s_k, Δ⟩ + ‖Δ‖²; and a pure
// gradient step has no radial part. Checked on models with every final norm,
// random and briefly trained, and on exact constructions.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include "lens_fixture.hpp"
#include "../model/tiny_configs.hpp"
#include "metalm/analysis/analyze_model.hpp"

namespace metalm {
namespace {

constexpr int64_t B = 4, T = 12, V = 23;

ModelConfig model_config(NormKind norm) {
  ModelConfig c = testing::small_config(V, T, 32, 2);
  c.norm = norm;
  resolve(c);
  return c;
}

Batch random_batch(uint64_t seed) { return testing::random_token_batch(B, T, V, seed); }

// A few AdamW steps on a repeating pattern, so the weights are no longer
// the initialisation (norms and gradients then have a trained structure).
void train_briefly(CausalTransformer& model) {
  model->train();
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-2));
  const at::Tensor seq = at::arange(B * (T + 1), at::TensorOptions(at::kLong)).remainder(7).reshape({B, T + 1});
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    const at::Tensor logits = model->forward(seq.narrow(1, 0, T));
    const at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, V}), seq.narrow(1, 1, T).reshape({-1}));
    loss.backward();
    opt.step();
  }
  model->eval();
}

// max |x| over the analysed positions of every record holding the statistic.
double max_abs_state(const Trajectory& tr, at::Tensor StateRecord::*m) {
  double out = 0;
  for (const auto& s : tr.states)
    if ((s.*m).defined()) out = std::max(out, (s.*m).abs().max().item<double>());
  return out;
}
double max_abs_step(const Trajectory& tr, at::Tensor StepRecord::*m) {
  double out = 0;
  for (const auto& s : tr.steps) out = std::max(out, (s.*m).abs().max().item<double>());
  return out;
}
double mean_abs_step(const Trajectory& tr, at::Tensor StepRecord::*m) {
  double sum = 0;
  for (const auto& s : tr.steps) sum += (s.*m).abs().mean().item<double>();
  return sum / static_cast<double>(tr.steps.size());
}

Trajectory analyse(CausalTransformer& model, Granularity g) {
  AnalysisConfig c;
  c.granularity = g;
  return analyze_batch(model, random_batch(3), 0, c).trajectory;
}

TEST(NormIdentity, ScaleInvariantFinalNormMakesTheGradientOrthogonalToTheState) {
  // eps breaks scale invariance by ε / (σ² + ε) (see the next test): at
  // GPT-2's initialisation (std 0.02) the embedding state has σ² ≈ 1e-3 and
  // the default eps 1e-5 leaves cosines of about 0.02 there. With a negligible
  // eps, and with the default one once training has grown the states, the
  // identity holds to float32 rounding.
  for (NormKind norm : {NormKind::LayerNorm, NormKind::RmsNorm})
    for (double eps : {1e-5, 1e-12})
      for (bool trained : {false, true}) {
        if (eps == 1e-5 && !trained) continue;
        ModelConfig cfg = model_config(norm);
        cfg.norm_eps = eps;
        torch::manual_seed(11);
        CausalTransformer model(cfg);
        if (trained) train_briefly(model);
        model->eval();
        for (auto g : {Granularity::Block, Granularity::Sublayer}) {
          const Trajectory tr = analyse(model, g);
          const std::string what = to_string(norm) + ", eps " + std::to_string(eps) +
                                   (trained ? ", trained" : ", random") + ", " + to_string(g);
          EXPECT_LT(max_abs_state(tr, &StateRecord::cos_state_grad), 1e-3) << what;
          EXPECT_LT(max_abs_step(tr, &StepRecord::cos_state_grad), 1e-3) << what;
          // LayerNorm removes the mean exactly (eps or not): n(h + c·1) = n(h).
          if (norm == NormKind::LayerNorm) {
            EXPECT_LT(max_abs_state(tr, &StateRecord::cos_ones_grad), 1e-4) << what;
          }
          // The step record's cosine is the state record's, at s_k.
          for (size_t k = 0; k < tr.steps.size(); ++k)
            EXPECT_TRUE(at::equal(tr.steps[k].cos_state_grad, tr.states[k].cos_state_grad)) << what << " step " << k;
        }
      }
}

// With eps the loss is not exactly homogeneous: d/dc n(c·s) at c = 1 is
// (n(s) − β) · ε / (v + ε), v the variance (LayerNorm) or mean square
// (RMSNorm) of s, so ⟨s, ∇ℓ⟩ = ε / (v + ε) · ⟨W_Uᵀ(p − e_y), n(s) − β⟩ with
// p = softmax(W_U n(s)). The analyser's cosines at initialisation must be
// exactly this, computed here in closed form (no autograd).
TEST(NormIdentity, AtInitialisationTheCosineIsTheEpsilonTerm) {
  for (NormKind norm : {NormKind::LayerNorm, NormKind::RmsNorm}) {
    torch::manual_seed(11);
    CausalTransformer model(model_config(norm));
    model->eval();
    const Batch batch = random_batch(3);
    const Trajectory tr = analyze_batch(model, batch, 0, AnalysisConfig{}).trajectory;
    const ModelTrajectory mt = capture_trajectory(model, batch.inputs, Granularity::Block);
    at::NoGradGuard no_grad;
    const double eps = model->config().norm_eps;
    const at::Tensor w_u = model->unembedding_table().to(at::kDouble);                              // [V, d]
    const at::Tensor beta = model->final_norm(at::zeros({1, 32})).to(at::kDouble);                // [1, d]
    const at::Tensor y = batch.targets.reshape({-1}).index_select(0, tr.rows);
    double largest = 0;
    for (size_t k = 0; k + 1 < mt.states.size(); ++k) {
      const at::Tensor s32 = mt.states[k].reshape({-1, 32}).index_select(0, tr.rows);
      const at::Tensor s = s32.to(at::kDouble);
      const at::Tensor n = model->final_norm(s32).to(at::kDouble);
      const at::Tensor p = at::softmax(at::matmul(n, w_u.t()), 1);
      const at::Tensor dn = at::matmul(p - at::one_hot(y, V).to(at::kDouble), w_u);  // ∇_n ℓ
      const at::Tensor v = norm == NormKind::LayerNorm ? s.var(1, false) : s.pow(2).mean(1);
      const at::Tensor s_dot_g = eps / (v + eps) * (dn * (n - beta)).sum(1);
      // ‖g‖ from the analyser (checked elsewhere), ‖s‖ here.
      const at::Tensor expected = s_dot_g / (s.norm(2, {1}) * tr.states[k].norm_grad);
      EXPECT_LT((tr.states[k].cos_state_grad - expected).abs().max().item<double>(), 2e-5)
          << to_string(norm) << " state " << k;
      largest = std::max(largest, expected.abs().max().item<double>());
    }
    EXPECT_GT(largest, 1e-3) << to_string(norm) << ": the eps term should be visible at initialisation";
  }
}

TEST(NormIdentity, WithoutAFinalNormTheGradientHasARadialPart) {
  for (bool trained : {false, true}) {
    torch::manual_seed(11);
    CausalTransformer model(model_config(NormKind::None));
    if (trained) train_briefly(model);
    model->eval();
    const Trajectory tr = analyse(model, Granularity::Block);
    // ⟨s, ∇ℓ⟩ = E_softmax[z] − z_y for a linear readout z = W_U s: no reason to vanish.
    EXPECT_GT(mean_abs_step(tr, &StepRecord::cos_state_grad), 0.05) << (trained ? "trained" : "random");
    // Nor does anything remove the mean of the gradient.
    EXPECT_GT(max_abs_state(tr, &StateRecord::cos_ones_grad), 0.05) << (trained ? "trained" : "random");
  }
}

TEST(NormIdentity, NormGrowthDecompositionAddsUpExactly) {
  for (NormKind norm : {NormKind::LayerNorm, NormKind::None}) {
    torch::manual_seed(13);
    CausalTransformer model(model_config(norm));
    model->eval();
    const Trajectory tr = analyse(model, Granularity::Sublayer);
    for (const auto& st : tr.steps) {
      const at::Tensor parts = st.norm_sq_growth_radial + st.norm_sq_growth_update;
      // Double precision on float32 states: only the rounding of the sums remains.
      const double scale = (st.norm_before.pow(2) + st.norm_sq_growth_update).max().item<double>();
      EXPECT_LT((st.norm_sq_growth - parts).abs().max().item<double>(), 1e-12 * scale) << st.from;
      // The parts are what they say, from the state and update norms.
      EXPECT_TRUE(at::allclose(st.norm_sq_growth_update, st.norm_update.pow(2), 1e-12, 0)) << st.from;
      EXPECT_TRUE(at::allclose(st.norm_sq_growth_radial, 2.0 * st.radial_update * st.norm_before, 1e-12, 1e-300))
          << st.from;
      // η|η|‖g‖² = ‖Δ‖² cos|cos|(Δ, −g): signed like the step, never more than ‖Δ‖² in size.
      EXPECT_TRUE(at::allclose(st.norm_sq_growth_gradient_signed,
                               st.step_size * st.step_size.abs() * st.norm_grad.pow(2), 1e-10, 0)) << st.from;
      EXPECT_TRUE(at::allclose(st.norm_sq_growth_gradient_signed,
                               st.norm_sq_growth_update * st.alignment * st.alignment.abs(), 1e-10, 0)) << st.from;
    }
  }
}

// The lens of an exactly scale-invariant norm, h / ‖h‖ (no eps), then an
// affine unembedding: its gradient is orthogonal to h to rounding.
LogitsFn sphere_lens(const testing::RandomLens& lens) {
  return [lens](const at::Tensor& h) {
    return at::matmul(h / h.norm(2, {1}, true), lens.w_u.t()) + lens.b_u;
  };
}

TEST(NormIdentity, RadialUpdateOfExactConstructions) {
  constexpr int64_t d = 16;
  const testing::RandomLens lens(d, V, 5);
  at::Generator gen = at::detail::createCPUGenerator(17);
  const auto o = at::TensorOptions(at::kDouble);
  const at::Tensor targets = at::randint(0, V, {B, T}, gen, at::TensorOptions(at::kLong));
  const LensObjective objective(sphere_lens(lens), targets, V);
  const at::Tensor s0 = at::normal(0.0, 1.0, {B, T, d}, gen, o);
  const at::Tensor u = s0 / s0.norm(2, {2}, true);  // unit radial direction per position

  // 1. s1 = s0 + c·u + w with w ⟂ s0: radial_update = c, norm² grows by
  //    2c‖s0‖ + c² + ‖w‖².
  at::Tensor w = at::normal(0.0, 1.0, {B, T, d}, gen, o);
  w = w - (w * u).sum(2, true) * u;
  const at::Tensor c = at::normal(0.0, 2.0, {B, T, 1}, gen, o);
  const at::Tensor s1 = s0 + c * u + w;
  const Trajectory tr = analyze_trajectory({s0, s1}, {"s0", "s1"}, objective);
  const at::Tensor rows = tr.rows;
  const at::Tensor c_rows = c.reshape({-1}).index_select(0, rows);
  const at::Tensor n0 = s0.norm(2, {2}).reshape({-1}).index_select(0, rows);
  const at::Tensor nw = w.norm(2, {2}).reshape({-1}).index_select(0, rows);
  const StepRecord& st = tr.steps[0];
  EXPECT_TRUE(at::allclose(st.radial_update, c_rows, 1e-12, 1e-12));
  EXPECT_TRUE(at::allclose(st.norm_sq_growth, 2 * c_rows * n0 + c_rows.pow(2) + nw.pow(2), 1e-10, 1e-10));

  // 2. An exact gradient step s1 = s0 − η g on the scale-invariant lens:
  //    no radial part, alignment 1, step size η, and all the norm growth is
  //    the gradient step's η²‖g‖².
  const double eta = 0.7;
  const at::Tensor g = loss_and_grad(objective, s0.reshape({-1, d}), at::arange(B * T, at::TensorOptions(at::kLong)))
                           .grad.reshape({B, T, d});
  const Trajectory gs = analyze_trajectory({s0, s0 - eta * g}, {"s0", "s1"}, objective);
  const StepRecord& s = gs.steps[0];
  EXPECT_LT(s.radial_update.abs().max().item<double>(), 1e-12 * s.norm_update.max().item<double>());
  EXPECT_LT(gs.states[0].cos_state_grad.abs().max().item<double>(), 1e-12);
  EXPECT_TRUE(at::allclose(s.alignment, at::ones_like(s.alignment), 1e-12, 0));
  EXPECT_TRUE(at::allclose(s.step_size, at::full_like(s.step_size, eta), 1e-12, 0));
  EXPECT_TRUE(at::allclose(s.norm_sq_growth, s.norm_sq_growth_gradient_signed, 1e-10, 1e-14));
  EXPECT_TRUE(at::allclose(s.norm_sq_growth_gradient_signed, eta * eta * s.norm_grad.pow(2), 1e-12, 0));
  // The same step taken uphill counts negative.
  const StepRecord up = analyze_trajectory({s0, s0 + eta * g}, {"s0", "s1"}, objective).steps[0];
  EXPECT_TRUE(at::allclose(up.norm_sq_growth_gradient_signed, -eta * eta * up.norm_grad.pow(2), 1e-12, 0));
}

}  // namespace
}  // namespace metalm
