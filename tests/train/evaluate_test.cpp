#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>

#include "metalm/core/error.hpp"
#include "metalm/train/evaluate.hpp"
#include "../model/tiny_configs.hpp"

namespace metalm {
namespace {

CausalTransformer make_model(int64_t context = 8) {
  torch::manual_seed(3);
  return CausalTransformer(testing::small_config(13, context, 16, 1));
}

std::vector<int64_t> ids_of(int64_t n) {
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = (i * 7 + i / 3) % 13;
  return ids;
}

// -log softmax(logits[t])[target[t]] summed over the positions >= first,
// computed element by element in double (independent of at::cross_entropy).
double manual_ce_sum(const at::Tensor& logits, const std::vector<int64_t>& targets, int64_t first) {
  const auto l = logits.to(at::kDouble).contiguous();  // [T, V]
  double sum = 0;
  for (int64_t t = first; t < l.size(0); ++t) {
    double mx = -INFINITY;
    for (int64_t v = 0; v < l.size(1); ++v) mx = std::max(mx, l[t][v].item<double>());
    double z = 0;
    for (int64_t v = 0; v < l.size(1); ++v) z += std::exp(l[t][v].item<double>() - mx);
    sum += -(l[t][targets[t]].item<double>() - mx - std::log(z));
  }
  return sum;
}

TEST(Evaluate, ZeroModelPredictsUniformlySoLossIsLogVocab) {
  auto model = make_model();
  {
    at::NoGradGuard g;
    for (auto& p : model->parameters()) p.zero_();
  }
  const auto r = evaluate_tokens(model, ids_of(30));
  EXPECT_NEAR(r.loss, std::log(13.0), 1e-6);
  EXPECT_NEAR(r.perplexity(), 13.0, 1e-4);
  EXPECT_EQ(r.tokens, 29);
  EXPECT_NEAR(r.bits_per_byte(2.0), std::log2(13.0) / 2.0, 1e-6);
}

TEST(Evaluate, ShortSequenceEqualsHandComputedCrossEntropy) {
  auto model = make_model();
  const auto ids = ids_of(6);
  at::NoGradGuard g;
  model->eval();
  const auto logits = model->forward(at::tensor(std::vector<int64_t>(ids.begin(), ids.end() - 1)).unsqueeze(0))[0];
  const std::vector<int64_t> targets(ids.begin() + 1, ids.end());
  const auto r = evaluate_tokens(model, ids);
  EXPECT_EQ(r.tokens, 5);
  EXPECT_NEAR(r.loss, manual_ce_sum(logits, targets, 0) / 5.0, 1e-6);
}

// Non-overlapping windows: inputs [0,8), [8,16), [16,19) (n = 20, context 8);
// each window's first target is predicted without earlier context.
TEST(Evaluate, LongSequenceUsesNonOverlappingWindowsByDefault) {
  auto model = make_model();
  const auto ids = ids_of(20);
  at::NoGradGuard g;
  model->eval();
  double sum = 0;
  for (int64_t begin : {0, 8, 16}) {
    const int64_t end = std::min<int64_t>(begin + 8, 19);
    const std::vector<int64_t> in(ids.begin() + begin, ids.begin() + end);
    const std::vector<int64_t> tg(ids.begin() + begin + 1, ids.begin() + end + 1);
    sum += manual_ce_sum(model->forward(at::tensor(in).unsqueeze(0))[0], tg, 0);
  }
  const auto r = evaluate_tokens(model, ids, 0, /*batch=*/2);
  EXPECT_EQ(r.tokens, 19);
  EXPECT_NEAR(r.loss, sum / 19.0, 1e-6);
}

// Stride 3: windows start at 0, 3, 6, ...; each scores only new targets, so
// every target after the first window has at least 5 tokens of context.
TEST(Evaluate, SlidingWindowScoresEveryTargetOnceWithMoreContext) {
  auto model = make_model();
  const auto ids = ids_of(20);
  at::NoGradGuard g;
  model->eval();
  double sum = 0;
  int64_t count = 0, scored_end = 0;
  for (int64_t begin = 0;; begin += 3) {
    const int64_t end = std::min<int64_t>(begin + 8, 19);
    const std::vector<int64_t> in(ids.begin() + begin, ids.begin() + end);
    const std::vector<int64_t> tg(ids.begin() + begin + 1, ids.begin() + end + 1);
    sum += manual_ce_sum(model->forward(at::tensor(in).unsqueeze(0))[0], tg, scored_end - begin);
    count += end - scored_end;
    scored_end = end;
    if (end == 19) break;
  }
  const auto r = evaluate_tokens(model, ids, 3, /*batch=*/4);
  EXPECT_EQ(count, 19);
  EXPECT_EQ(r.tokens, 19);
  EXPECT_NEAR(r.loss, sum / 19.0, 1e-6);
}

TEST(Evaluate, RepeatedEvaluationIsIdenticalAndRestoresTrainMode) {
  auto model = make_model();
  model->train();
  const auto ids = ids_of(50);
  const auto a = evaluate_tokens(model, ids), b = evaluate_tokens(model, ids);
  EXPECT_EQ(a.loss, b.loss);
  EXPECT_TRUE(model->is_training());
}

TEST(Evaluate, BatchesMeanMatchesHandComputedCrossEntropy) {
  auto model = make_model();
  const auto ids = ids_of(18);
  Batch b{at::tensor(ids).slice(0, 0, 16).reshape({2, 8}), at::tensor(ids).slice(0, 1, 17).reshape({2, 8})};
  at::NoGradGuard g;
  model->eval();
  const auto logits = model->forward(b.inputs);
  double sum = 0;
  for (int64_t i = 0; i < 2; ++i) {
    const auto t = b.targets[i].contiguous();
    sum += manual_ce_sum(logits[i], std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + 8), 0);
  }
  const auto r = evaluate_batches(model, {b});
  EXPECT_EQ(r.tokens, 16);
  EXPECT_NEAR(r.loss, sum / 16.0, 1e-6);
}

TEST(Evaluate, RejectsTooFewTokensAndBadStride) {
  auto model = make_model();
  EXPECT_THROW(evaluate_tokens(model, {1}), ShapeError);
  EXPECT_THROW(evaluate_tokens(model, ids_of(10), 9), ShapeError);
}

}  // namespace
}  // namespace metalm
