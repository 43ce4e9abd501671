// Position encodings: RoPE scores depend only on relative position.
#include <gtest/gtest.h>

#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/positions.hpp"
#include "tiny_configs.hpp"

namespace metalm {
namespace {

TEST(Rope, QueryKeyScoreDependsOnlyOnRelativePosition) {
  torch::manual_seed(0);
  const auto tables = rope_tables(64, 8, 10000.0, torch::kDouble);
  const torch::Tensor q = torch::randn({1, 8}, torch::kDouble), k = torch::randn({1, 8}, torch::kDouble);
  auto score = [&](int64_t m, int64_t n) {
    return (apply_rope(q, tables.cos, tables.sin, m) * apply_rope(k, tables.cos, tables.sin, n)).sum().item<double>();
  };
  for (int64_t shift : {1, 7, 30}) {
    EXPECT_NEAR(score(5, 2), score(5 + shift, 2 + shift), 1e-12);
    EXPECT_NEAR(score(3, 3), score(3 + shift, 3 + shift), 1e-12);
  }
  EXPECT_GT(std::abs(score(5, 2) - score(5, 3)), 1e-3);  // but it does depend on m - n
  // Rotation preserves norms.
  EXPECT_NEAR(apply_rope(q, tables.cos, tables.sin, 9).norm().item<double>(), q.norm().item<double>(), 1e-12);
}

// In a rope model with linear attention, layer 0's raw score q_t . k_s =
// pattern[t, s] * (t + 1) depends only on the tokens and t - s: a periodic
// token sequence gives periodic scores. Learned positions (the control) do not.
TEST(Rope, ModelAttentionScoresAreShiftInvariant) {
  for (PositionKind pos : {PositionKind::Rope, PositionKind::Learned}) {
    ModelConfig cfg = testing::tiny_config();
    cfg.attention = AttentionKind::Linear;
    cfg.position = pos;
    torch::manual_seed(5);
    CausalTransformer model(cfg);
    model->to(torch::kDouble);
    const torch::Tensor tokens = torch::tensor({{4, 9, 2, 4, 9, 2, 4, 9, 2, 4, 9, 2}}, torch::kLong);
    Trace trace;
    model->forward(tokens, CaptureRequest{{Site::AttnPattern}}, trace);
    const torch::Tensor count = torch::arange(1, 13, torch::kDouble).unsqueeze(1);  // [T, 1]
    const torch::Tensor scores = trace.at(Site::AttnPattern, 0)[0] * count;         // [H, T, T]
    const torch::Tensor early = scores.narrow(1, 0, 9).narrow(2, 0, 9);
    const torch::Tensor shifted = scores.narrow(1, 3, 9).narrow(2, 3, 9);
    const bool invariant = torch::allclose(early.tril(), shifted.tril(), 1e-9, 1e-12);
    EXPECT_EQ(invariant, pos == PositionKind::Rope) << to_string(pos);
  }
}

TEST(Sinusoidal, TableInterleavesSinesAndCosines) {
  const torch::Tensor t = sinusoidal_table(10, 6, torch::kDouble);
  EXPECT_NEAR(t[3][0].item<double>(), std::sin(3.0), 1e-12);
  EXPECT_NEAR(t[3][1].item<double>(), std::cos(3.0), 1e-12);
  EXPECT_NEAR(t[3][4].item<double>(), std::sin(3.0 / std::pow(10000.0, 4.0 / 6.0)), 1e-12);
}

}  // namespace
}  // namespace metalm
