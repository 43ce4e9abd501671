// The matched controls, the permutation null and the bootstrap intervals
// (docs/design.md 5.5-5.6): each control rules out the explanation it is
// built for, and the intervals cover what they claim to.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "metalm/analysis/controls.hpp"
#include "metalm/analysis/inference.hpp"
#include "metalm/analysis/objective.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/analysis/trajectory.hpp"
#include "metalm/core/hash.hpp"

namespace metalm {
namespace {

constexpr int64_t V = 40, D = 16;
const auto kDouble = at::TensorOptions(at::kDouble);
const auto kLong = at::TensorOptions(at::kLong);

// A linear read-out z(h) = W_U h: its gradient against target y is W_Uᵀ(q − e_y).
struct LinearLens {
  at::Tensor w_u;  // [V, d]
  explicit LinearLens(uint64_t seed) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    w_u = at::normal(0.0, 1.0, {V, D}, gen, kDouble);
  }
  LogitsFn fn() const {
    const at::Tensor w = w_u;
    return [w](const at::Tensor& h) { return at::matmul(h, w.t().to(h.scalar_type())); };
  }
};

double mean_of(const at::Tensor& t) { return summarize(t).mean; }

// Draws [B, T] ids from the distribution `probs` [V].
at::Tensor draw_tokens(const at::Tensor& probs, int64_t b, int64_t t, at::Generator& gen) {
  return at::multinomial(probs, b * t, /*replacement=*/true, gen).reshape({b, t});
}

TEST(Controls, ShuffledTargetsMatchAContextFreePushTowardFrequentTokens) {
  // Targets follow a skewed unigram distribution and have nothing to do with
  // the states; the update pushes every state toward the frequent tokens'
  // logits alike. The uniform control calls that optimization; the shuffled
  // control, whose targets have the true targets' distribution, does not.
  constexpr int64_t B = 128, T = 128;
  const LinearLens lens(1);
  at::Generator gen = at::detail::createCPUGenerator(2);
  const at::Tensor unigram = 1.0 / at::arange(1, V + 1, kDouble);  // Zipf
  const at::Tensor probs = unigram / unigram.sum();
  const at::Tensor targets = draw_tokens(probs, B, T, gen);
  const at::Tensor s0 = at::normal(0.0, 1.0, {B, T, D}, gen, kDouble);
  const at::Tensor logp = probs.log() - probs.log().mean();
  const at::Tensor push = 0.05 * at::matmul(logp, lens.w_u);  // [d]: raises the frequent tokens' logits
  const LensObjective objective(lens.fn(), targets, V);
  const StepRecord st = analyze_trajectory({s0, s0 + push}, {"s0", "s1"}, objective).steps[0];
  const double truth = mean_of(st.alignment);
  EXPECT_GT(truth - mean_of(st.alignment_uniform), 0.05);
  EXPECT_LT(std::abs(truth - mean_of(st.alignment_shuffled)), 0.01);
  // Without current tokens the bigram control is the shuffled one.
  EXPECT_TRUE(at::equal(st.alignment_bigram, st.alignment_shuffled));
  EXPECT_EQ(mean_of(st.bigram_fallback), 1.0);
}

TEST(Controls, BeliefMatchesAnUpdateThatOnlySharpensTheModelsOwnGuess) {
  // An under-confident read-out whose guess is right; the layer only scales
  // the state, sharpening that guess into the final prediction. The uniform
  // control calls it optimization; the belief control scores the same.
  constexpr int64_t B = 64, T = 64;
  const LinearLens lens(3);
  at::Generator gen = at::detail::createCPUGenerator(4);
  const at::Tensor s0 = at::normal(0.0, 0.3, {B, T, D}, gen, kDouble);
  const at::Tensor targets = at::matmul(s0, lens.w_u.t()).argmax(2);  // the guess is right
  const LensObjective objective(lens.fn(), targets, V);
  const StepRecord st = analyze_trajectory({s0, 200.0 * s0}, {"s0", "final"}, objective).steps[0];
  const double truth = mean_of(st.alignment);
  EXPECT_GT(truth - mean_of(st.alignment_uniform), 0.05);
  EXPECT_LT(std::abs(truth - mean_of(st.alignment_belief)), 0.01);
}

TEST(Controls, AnExactGradientStepBeatsEveryControl) {
  // Step 0 is one exact gradient step on each position's own loss; step 1
  // then moves the state somewhere unrelated, so the final belief is not the
  // target either.
  constexpr int64_t B = 32, T = 32;
  const LinearLens lens(5);
  at::Generator gen = at::detail::createCPUGenerator(6);
  const at::Tensor targets = at::randint(0, V, {B, T}, gen, kLong);
  const at::Tensor current = at::randint(0, 4, {B, T}, gen, kLong);  // groups for the bigram control
  const LensObjective objective(lens.fn(), targets, V);
  const at::Tensor s0 = at::normal(0.0, 1.0, {B, T, D}, gen, kDouble);
  const at::Tensor g = loss_and_grad(objective, s0.reshape({-1, D}), at::arange(B * T, kLong)).grad.reshape({B, T, D});
  const at::Tensor s1 = s0 - 0.2 * g;
  const at::Tensor s2 = s1 + at::normal(0.0, 3.0, {B, T, D}, gen, kDouble);
  AnalysisConfig c;
  c.permutations = 20;
  const StepRecord st = analyze_trajectory({s0, s1, s2}, {"s0", "s1", "s2"}, objective, c, current).steps[0];
  EXPECT_LT((st.alignment - 1.0).abs().max().item<double>(), 1e-12);
  EXPECT_EQ(mean_of(st.bigram_fallback), 0.0);  // 1024 positions, 4 tokens: never alone
  for (const auto& control : kControls)
    EXPECT_GT(mean_of(st.alignment - st.*control.alignment), 0.5) << control.name;
  // The band of the permutation null lies far below.
  const at::Tensor null_means = st.null_sum / st.null_count;
  EXPECT_LT(null_means.max().item<double>(), 0.5);
  EXPECT_EQ(st.null_count.min().item<double>(), static_cast<double>(B * T));
}

TEST(Controls, TheBeliefSplitOfTheGradientIsExact) {
  constexpr int64_t B = 4, T = 8;
  const LinearLens lens(7);
  at::Generator gen = at::detail::createCPUGenerator(8);
  const at::Tensor targets = at::randint(0, V, {B, T}, gen, kLong);
  const LensObjective objective(lens.fn(), targets, V);
  const at::Tensor s0 = at::normal(0.0, 1.0, {B, T, D}, gen, kDouble);
  const at::Tensor s1 = at::normal(0.0, 1.0, {B, T, D}, gen, kDouble);
  const at::Tensor rows = at::arange(B * T, kLong);
  const at::Tensor g = loss_and_grad(objective, s0.reshape({-1, D}), rows).grad;
  // g_b = W_Uᵀ(q(s0) − q(s1)) for the linear read-out, by hand.
  const at::Tensor q0 = at::softmax(at::matmul(s0.reshape({-1, D}), lens.w_u.t()), 1);
  const at::Tensor q1 = at::softmax(at::matmul(s1.reshape({-1, D}), lens.w_u.t()), 1);
  const at::Tensor gb = at::matmul(q0 - q1, lens.w_u);
  const at::Tensor across = g - ((g * gb).sum(1) / gb.pow(2).sum(1)).unsqueeze(1) * gb;
  const at::Tensor delta = (s1 - s0).reshape({-1, D});
  auto cos = [](const at::Tensor& a, const at::Tensor& b) { return (a * b).sum(1) / (a.norm(2, {1}) * b.norm(2, {1})); };
  const StepRecord st = analyze_trajectory({s0, s1}, {"s0", "final"}, objective).steps[0];
  EXPECT_TRUE(at::allclose(st.alignment_belief, cos(delta, -gb), 1e-10, 1e-12));
  EXPECT_TRUE(at::allclose(st.cos_grad_belief, cos(g, gb), 1e-10, 1e-12));
  EXPECT_TRUE(at::allclose(st.alignment_unexplained, cos(delta, -across), 1e-9, 1e-12));
  EXPECT_LT((across * gb).sum(1).abs().max().item<double>(), 1e-12);
}

TEST(Controls, PairingsAreSingleCyclesReproducibleFromTheirKeys) {
  const at::Tensor rows = at::tensor(std::vector<int64_t>{0, 1, 2, 5, 6, 7, 9}, kLong);
  const uint64_t seed = 99;
  const at::Tensor partner = cycle_partners(rows, seed, kShuffledStream);
  // One cycle through every row: n steps from any row come back to it, never sooner.
  int64_t i = 0;
  for (int64_t step = 1; step <= rows.size(0); ++step) {
    i = partner[i].item<int64_t>();
    if (step < rows.size(0)) {
      EXPECT_NE(i, 0) << step;
    }
  }
  EXPECT_EQ(i, 0);
  // The order is that of the keys mix(seed, "PERM", stream, row).
  std::vector<std::pair<uint64_t, int64_t>> keyed;
  for (int64_t j = 0; j < rows.size(0); ++j) {
    const int64_t r = rows[j].item<int64_t>();
    keyed.emplace_back(mix(seed, kPermutationKey, kShuffledStream, r), j);
  }
  std::sort(keyed.begin(), keyed.end());
  for (size_t j = 0; j < keyed.size(); ++j)
    EXPECT_EQ(partner[keyed[j].second].item<int64_t>(), keyed[(j + 1) % keyed.size()].second);
  // Rows that are not analysed keep their own target.
  const at::Tensor source = shuffled_sources(rows, 10, seed);
  EXPECT_EQ(source[3].item<int64_t>(), 3);
  EXPECT_EQ(source[8].item<int64_t>(), 8);
}

TEST(Controls, BigramPartnersShareTheCurrentTokenOrFallBack) {
  const at::Tensor rows = at::arange(8, kLong);
  const at::Tensor current = at::tensor(std::vector<int64_t>{3, 1, 3, 3, 1, 7, 2, 3}, kLong);
  at::Tensor fallback;
  const at::Tensor source = bigram_sources(rows, current, 8, 5, fallback);
  const at::Tensor shuffled = shuffled_sources(rows, 8, 5);
  for (int64_t r = 0; r < 8; ++r) {
    const int64_t s = source[r].item<int64_t>();
    const bool alone = current[r].item<int64_t>() == 7 || current[r].item<int64_t>() == 2;
    EXPECT_EQ(fallback[r].item<double>(), alone ? 1.0 : 0.0) << r;
    if (alone) {
      EXPECT_EQ(s, shuffled[r].item<int64_t>()) << r;
    } else {
      EXPECT_NE(s, r);
      EXPECT_EQ(current[s].item<int64_t>(), current[r].item<int64_t>()) << r;
    }
  }
}

// Values of C clusters of m positions with a shared effect per cluster:
// μ + a_c + e, a_c ~ N(0, 1), e ~ N(0, 0.5²).
struct ClusteredDraw {
  at::Tensor values, cluster;
  ClusteredDraw(int64_t clusters, int64_t m, double mu, uint64_t seed) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    const at::Tensor a = at::normal(0.0, 1.0, {clusters, 1}, gen, kDouble);
    values = (mu + a + at::normal(0.0, 0.5, {clusters, m}, gen, kDouble)).reshape({-1});
    cluster = at::arange(clusters, kLong).unsqueeze(1).expand({clusters, m}).reshape({-1});
  }
};

TEST(Bootstrap, TheSequenceIntervalCoversTheTrueMeanAtItsLevel) {
  constexpr double mu = 0.3;
  int covered = 0;
  for (uint64_t draw = 0; draw < 100; ++draw) {
    const ClusteredDraw d(40, 8, mu, 1000 + draw);
    const Interval ci = ClusterBootstrap(d.cluster, 400, draw).mean_interval(d.values);
    covered += (ci.lo <= mu && mu <= ci.hi);
  }
  EXPECT_GE(covered, 90);
}

TEST(Bootstrap, ResamplingSequencesIsWiderThanResamplingCorrelatedPositions) {
  const ClusteredDraw d(30, 16, 0.0, 11);
  const Interval by_sequence = ClusterBootstrap(d.cluster, 500, 1).mean_interval(d.values);
  const Interval by_position = ClusterBootstrap(at::arange(d.values.size(0), kLong), 500, 1).mean_interval(d.values);
  EXPECT_GT(by_sequence.hi - by_sequence.lo, 2.0 * (by_position.hi - by_position.lo));
}

TEST(Bootstrap, ResamplesAreTheDocumentedDrawsAndSkipNaN) {
  // 3 clusters with ids 7, 2, 9 (sorted: 2, 7, 9 -> 0, 1, 2).
  const at::Tensor cluster = at::tensor(std::vector<int64_t>{7, 7, 2, 9, 9}, kLong);
  const at::Tensor values = at::tensor(std::vector<double>{1.0, NAN, 4.0, 2.0, 6.0}, kDouble);
  const double sums[3] = {4.0, 1.0, 8.0}, counts[3] = {1.0, 1.0, 2.0};
  const ClusterBootstrap boot(cluster, 5, 123);
  const std::vector<double> means = boot.resampled_means(values);
  ASSERT_EQ(means.size(), 5u);
  for (int64_t r = 0; r < 5; ++r) {
    double s = 0, n = 0;
    for (int64_t j = 0; j < 3; ++j) {
      const auto c = mix(uint64_t{123}, kBootstrapStream, r, j) % 3;
      s += sums[c];
      n += counts[c];
    }
    EXPECT_DOUBLE_EQ(means[static_cast<size_t>(r)], s / n) << r;
  }
  EXPECT_DOUBLE_EQ(quantile({4.0, 1.0, NAN, 3.0, 2.0}, 0.5), 2.5);
  EXPECT_TRUE(std::isnan(quantile({NAN}, 0.5)));
}

}  // namespace
}  // namespace metalm
