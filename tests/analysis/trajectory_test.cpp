#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "lens_fixture.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/analysis/trajectory.hpp"
#include "metalm/core/error.hpp"

namespace metalm {
namespace {

const auto kF64 = at::TensorOptions(at::kDouble);

struct GradientStepFixture {
  static constexpr int64_t B = 3, T = 5, d = 8, V = 13;
  testing::RandomLens lens{d, V, 11};
  at::Tensor targets;
  std::unique_ptr<LensObjective> objective;
  at::Tensor s0;

  GradientStepFixture() {
    at::Generator gen = at::detail::createCPUGenerator(5);
    targets = at::randint(0, V, {B, T}, gen, at::TensorOptions(at::kLong));
    targets.select(1, T - 1).fill_(-1);  // the last position has no next token
    objective = std::make_unique<LensObjective>(lens.fn(), targets, V);
    s0 = at::normal(0.0, 1.0, {B, T, d}, gen, kF64);
  }

  // A "block" that is exactly s − η g(s) for the lens objective.
  at::Tensor gd_block(const at::Tensor& s, double eta) const {
    const at::Tensor rows = at::arange(B * T, at::TensorOptions(at::kLong));
    const at::Tensor g = loss_and_grad(*objective, s.reshape({-1, d}), rows).grad;
    return s - eta * g.reshape({B, T, d});
  }
};

TEST(AnalyzeTrajectory, ExactGradientStepGivesAlignmentOneAndItsStepSize) {
  GradientStepFixture f;
  const at::Tensor s1 = f.gd_block(f.s0, 0.3);
  const at::Tensor s2 = f.gd_block(s1, 0.05);
  const Trajectory tr = analyze_trajectory({f.s0, s1, s2}, {"a", "b", "c"}, *f.objective);
  ASSERT_EQ(tr.steps.size(), 2u);
  EXPECT_EQ(tr.count(), f.B * (f.T - 1));
  for (const auto& [k, eta] : std::vector<std::pair<int, double>>{{0, 0.3}, {1, 0.05}}) {
    const StepRecord& st = tr.steps[static_cast<size_t>(k)];
    EXPECT_LT((st.alignment - 1.0).abs().max().item<double>(), 1e-5);
    EXPECT_LT((st.step_size - eta).abs().max().item<double>(), 1e-5 * eta);
    // The random-target gradient points elsewhere.
    EXPECT_LT(summarize(st.alignment_uniform).mean, 0.99);
  }
  EXPECT_EQ(tr.steps[1].from, "b");
  EXPECT_EQ(tr.steps[1].to, "c");
}

TEST(AnalyzeTrajectory, ExactGradientStepInSinglePrecisionToo) {
  GradientStepFixture f;
  testing::RandomLens lens32(f.d, f.V, 11, at::kFloat);
  LensObjective obj32(lens32.fn(), f.targets, f.V);
  const at::Tensor s0 = f.s0.to(at::kFloat);
  const at::Tensor rows = at::arange(f.B * f.T, at::TensorOptions(at::kLong));
  const at::Tensor s1 = s0 - 0.2 * loss_and_grad(obj32, s0.reshape({-1, f.d}), rows).grad.reshape(s0.sizes());
  const Trajectory tr = analyze_trajectory({s0, s1}, {"a", "b"}, obj32);
  EXPECT_LT((tr.steps[0].alignment - 1.0).abs().max().item<double>(), 1e-5);
  EXPECT_LT((tr.steps[0].step_size - 0.2).abs().max().item<double>(), 1e-5);
}

TEST(AnalyzeTrajectory, ChunkingDoesNotChangeResults) {
  GradientStepFixture f;
  const at::Tensor s1 = f.s0 + 0.1 * at::randn_like(f.s0);
  const at::Tensor s2 = s1 + 0.1 * at::randn_like(s1);
  AnalysisConfig whole, chunked;
  chunked.chunk = 3;
  const Trajectory a = analyze_trajectory({f.s0, s1, s2}, {"a", "b", "c"}, *f.objective, whole);
  const Trajectory b = analyze_trajectory({f.s0, s1, s2}, {"a", "b", "c"}, *f.objective, chunked);
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_TRUE(at::allclose(a.steps[k].alignment, b.steps[k].alignment, 1e-12, 1e-12));
    EXPECT_TRUE(at::allclose(a.steps[k].alignment_uniform, b.steps[k].alignment_uniform, 1e-12, 1e-12));
    EXPECT_TRUE(at::allclose(a.steps[k].loss_after, b.steps[k].loss_after, 1e-12, 1e-12));
  }
}

TEST(AnalyzeTrajectory, StatisticsMatchTheirDefinitions) {
  GradientStepFixture f;
  const at::Tensor s1 = f.s0 + 0.5 * at::randn_like(f.s0);
  const Trajectory tr = analyze_trajectory({f.s0, s1}, {"a", "b"}, *f.objective);
  const StepRecord& st = tr.steps[0];
  const at::Tensor rows = tr.rows;
  const LossAndGrad l0 = loss_and_grad(*f.objective, f.s0.reshape({-1, f.d}).index_select(0, rows), rows);
  const LossAndGrad l1 = loss_and_grad(*f.objective, s1.reshape({-1, f.d}).index_select(0, rows), rows, false);
  const at::Tensor delta = (s1 - f.s0).reshape({-1, f.d}).index_select(0, rows);
  const at::Tensor dot = -(delta * l0.grad).sum(1);
  EXPECT_TRUE(at::allclose(st.first_order_decrease, dot));
  EXPECT_TRUE(at::allclose(st.alignment, at::cosine_similarity(delta, -l0.grad, 1)));
  EXPECT_TRUE(at::allclose(st.step_size, dot / l0.grad.pow(2).sum(1)));
  EXPECT_TRUE(at::allclose(st.actual_decrease, l0.loss - l1.loss));
  EXPECT_TRUE(at::allclose(st.norm_update, delta.norm(2, {1})));
  EXPECT_TRUE(at::allclose(tr.states[1].loss, l1.loss));
  EXPECT_TRUE(at::equal(tr.positions, rows.remainder(f.T)));
}

TEST(AnalyzeTrajectory, FirstOrderDecreasePredictsSmallSteps) {
  GradientStepFixture f;
  const at::Tensor s1 = f.gd_block(f.s0, 1e-4);
  const StepRecord st = analyze_trajectory({f.s0, s1}, {"a", "b"}, *f.objective).steps[0];
  EXPECT_TRUE(at::allclose(st.actual_decrease, st.first_order_decrease, 1e-3, 1e-12));
}

TEST(AnalyzeTrajectory, ConcatJoinsBatches) {
  GradientStepFixture f;
  const at::Tensor s1 = f.s0 + 0.1 * at::randn_like(f.s0);
  const Trajectory a = analyze_trajectory({f.s0, s1}, {"a", "b"}, *f.objective);
  const Trajectory both = concat({a, a});
  EXPECT_EQ(both.count(), 2 * a.count());
  EXPECT_EQ(both.batch, 2 * f.B);
  EXPECT_TRUE(at::equal(both.steps[0].alignment, at::cat({a.steps[0].alignment, a.steps[0].alignment})));
  EXPECT_EQ(both.rows[a.count()].item<int64_t>(), a.rows[0].item<int64_t>() + f.B * f.T);
}

TEST(AnalyzeTrajectory, RejectsMismatchedStates) {
  GradientStepFixture f;
  EXPECT_THROW(analyze_trajectory({f.s0}, {"a"}, *f.objective), ShapeError);
  EXPECT_THROW(analyze_trajectory({f.s0, f.s0.narrow(1, 0, 2)}, {"a", "b"}, *f.objective), ShapeError);
  EXPECT_THROW(analyze_trajectory({f.s0, f.s0}, {"a"}, *f.objective), ShapeError);
}

}  // namespace
}  // namespace metalm
