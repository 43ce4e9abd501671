#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "lens_fixture.hpp"
#include "metalm/analysis/objective.hpp"
#include "metalm/core/error.hpp"

namespace metalm {
namespace {

const auto kF64 = at::TensorOptions(at::kDouble);

TEST(LensObjective, GradientEqualsCentralFiniteDifferences) {
  const int64_t B = 2, T = 3, d = 6, V = 11;
  testing::RandomLens lens(d, V, 7);
  at::Generator gen = at::detail::createCPUGenerator(3);
  const at::Tensor targets = at::randint(0, V, {B, T}, gen, at::TensorOptions(at::kLong));
  LensObjective obj(lens.fn(), targets, V);
  const at::Tensor h = at::normal(0.0, 1.0, {B * T, d}, gen, kF64);
  const at::Tensor rows = at::arange(B * T, at::TensorOptions(at::kLong));
  const LossAndGrad lg = loss_and_grad(obj, h, rows);

  const double eps = 1e-6;
  at::Tensor fd = at::zeros_like(h);
  for (int64_t i = 0; i < h.size(0); ++i)
    for (int64_t j = 0; j < d; ++j) {
      at::Tensor hp = h.clone(), hm = h.clone();
      hp[i][j] += eps;
      hm[i][j] -= eps;
      // Row-separable: only row i's loss moves.
      const double lp = obj.loss(hp, rows)[i].item<double>();
      const double lm = obj.loss(hm, rows)[i].item<double>();
      fd[i][j] = (lp - lm) / (2 * eps);
    }
  EXPECT_TRUE(at::allclose(lg.grad, fd, 1e-6, 1e-8)) << (lg.grad - fd).abs().max().item<double>();
}

TEST(LensObjective, LossIsNaturalLogCrossEntropyOfTheLensLogits) {
  const int64_t d = 4, V = 5;
  testing::RandomLens lens(d, V, 1);
  const at::Tensor targets = at::tensor({3, 0}, at::TensorOptions(at::kLong)).reshape({1, 2});
  LensObjective obj(lens.fn(), targets, V);
  const at::Tensor h = at::randn({2, d}, kF64);
  const at::Tensor logits = lens.fn()(h);
  const at::Tensor p = at::softmax(logits, 1);
  const at::Tensor loss = obj.loss(h, at::arange(2, at::TensorOptions(at::kLong)));
  EXPECT_NEAR(loss[0].item<double>(), -std::log(p[0][3].item<double>()), 1e-12);
  EXPECT_NEAR(loss[1].item<double>(), -std::log(p[1][0].item<double>()), 1e-12);
}

TEST(LensObjective, NegativeTargetsMarkPositionsWithoutNextToken) {
  const at::Tensor targets = at::tensor({1, 2, -1}, at::TensorOptions(at::kLong)).reshape({1, 3});
  LensObjective obj(testing::RandomLens(4, 3, 1).fn(), targets, 3);
  EXPECT_TRUE(at::equal(obj.valid(), at::tensor({1, 1, 0}).to(at::kBool).reshape({1, 3})));
}

TEST(LensObjective, RandomTargetsAreSeededInRangeAndNeverTheTrueToken) {
  const int64_t V = 4;
  at::Tensor targets = at::randint(0, V, {8, 64}, at::TensorOptions(at::kLong));
  targets[0][0] = -1;
  LensObjective obj(testing::RandomLens(4, V, 1).fn(), targets, V);
  auto r1 = obj.with_random_targets(9), r2 = obj.with_random_targets(9), r3 = obj.with_random_targets(10);
  const auto& t1 = dynamic_cast<LensObjective&>(*r1).targets();
  const auto& t2 = dynamic_cast<LensObjective&>(*r2).targets();
  const auto& t3 = dynamic_cast<LensObjective&>(*r3).targets();
  EXPECT_TRUE(at::equal(t1, t2));
  EXPECT_FALSE(at::equal(t1, t3));
  const at::Tensor valid = targets.ge(0);
  EXPECT_FALSE(t1.masked_select(valid).eq(targets.masked_select(valid)).any().item<bool>());
  EXPECT_TRUE(t1.masked_select(valid).lt(V).all().item<bool>());
  EXPECT_TRUE(t1.masked_select(valid).ge(0).all().item<bool>());
  EXPECT_EQ(t1[0][0].item<int64_t>(), -1);
  // Every wrong id gets drawn: the draw is uniform over the V-1 others.
  EXPECT_EQ(std::get<0>(at::_unique(t1.masked_select(valid))).numel(), V);
}

// The documented counter rule (docs/design.md 5.5): the wrong token of
// sequence i, position t is (y + 1 + mix(seed, i, t) mod (V - 1)) mod V. The
// expected ids come from the Python recipe in metalm/core/hash.hpp (seed 9,
// V = 7, every true target 0, so the id is the shift itself); a rule that
// depended on a generator's stream, or on the batch shape, would differ.
TEST(LensObjective, RandomTargetsFollowTheCounterRuleOfSeedSequenceAndPosition) {
  const int64_t V = 7;
  LensObjective obj(testing::RandomLens(4, V, 1).fn(), at::zeros({2, 4}, at::TensorOptions(at::kLong)), V);
  const auto r = obj.with_random_targets(9);
  const at::Tensor expected = at::tensor({6, 6, 5, 5, 6, 5, 4, 6}, at::TensorOptions(at::kLong)).reshape({2, 4});
  EXPECT_TRUE(at::equal(dynamic_cast<LensObjective&>(*r).targets(), expected));
  // Position (i, t) keeps its draw in a longer batch.
  LensObjective wider(testing::RandomLens(4, V, 1).fn(), at::zeros({3, 6}, at::TensorOptions(at::kLong)), V);
  const auto rw = wider.with_random_targets(9);
  EXPECT_TRUE(at::equal(dynamic_cast<LensObjective&>(*rw).targets().narrow(0, 0, 2).narrow(1, 0, 4), expected));
}

TEST(LensObjective, RejectsLogitsOfTheWrongWidth) {
  const at::Tensor targets = at::zeros({1, 2}, at::TensorOptions(at::kLong));
  LensObjective obj(testing::RandomLens(4, 3, 1).fn(), targets, 5);
  EXPECT_THROW(obj.loss(at::randn({2, 4}, kF64), at::arange(2, at::TensorOptions(at::kLong))), ShapeError);
}

TEST(SquaredLossObjective, GradientIsReadoutTransposeTimesResidual) {
  const at::Tensor readout = at::randn({2, 5}, kF64);
  const at::Tensor targets = at::randn({1, 3, 2}, kF64);
  SquaredLossObjective obj(readout, targets, at::ones({1, 3}, at::TensorOptions(at::kBool)));
  const at::Tensor h = at::randn({3, 5}, kF64);
  const at::Tensor rows = at::arange(3, at::TensorOptions(at::kLong));
  const LossAndGrad lg = loss_and_grad(obj, h, rows);
  const at::Tensor resid = at::matmul(h, readout.t()) - targets[0];  // [3, 2]
  EXPECT_TRUE(at::allclose(lg.loss, 0.5 * resid.pow(2).sum(1)));
  EXPECT_TRUE(at::allclose(lg.grad, at::matmul(resid, readout)));
}

}  // namespace
}  // namespace metalm
