// Ground truth for the analyser: a linear self-attention layer constructed to
// take one gradient-descent step on in-context linear regression
// (derivation in src/analysis/linear_icl.cpp).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "metalm/analysis/linear_icl.hpp"
#include "metalm/analysis/summary.hpp"

namespace metalm {
namespace {

TEST(LinearIcl, LayerWritesTheOneStepGradientDescentPredictionIntoTheQuery) {
  LinearIclOptions o;
  o.n = 32;
  o.batch = 4;
  o.eta = 0.3;
  const LinearIclSetting s = make_linear_icl(o);
  // Independently: W1 = (η/N) Σ y_i x_iᵀ, prediction W1 x_q.
  const at::Tensor x = s.before.narrow(1, 0, o.n).narrow(2, 0, o.d_x);       // [B, N, d_x]
  const at::Tensor y = s.before.narrow(1, 0, o.n).narrow(2, o.d_x, o.d_x);   // [B, N, d_y]
  const at::Tensor w1 = o.eta / o.n * at::matmul(y.transpose(1, 2), x);     // [B, d_y, d_x]
  const at::Tensor xq = s.before.select(1, o.n).narrow(1, 0, o.d_x);        // [B, d_x]
  const at::Tensor pred = at::matmul(w1, xq.unsqueeze(2)).squeeze(2);       // [B, d_y]
  const at::Tensor query_after = s.after.select(1, o.n);
  EXPECT_TRUE(at::allclose(query_after.narrow(1, o.d_x, o.d_x), pred, 1e-10, 1e-12));
  EXPECT_TRUE(at::allclose(query_after.narrow(1, 0, o.d_x), xq));  // x part untouched
}

TEST(LinearIcl, ChunkedLayerEqualsTheQuadraticForm) {
  const int64_t B = 2, T = 150, D = 5;  // several chunks, the last one partial
  const auto o = at::TensorOptions(at::kDouble);
  LinearAttentionWeights w{at::randn({D, D}, o), at::randn({D, D}, o), at::randn({D, D}, o), at::randn({D, D}, o), 7.0};
  const at::Tensor e = at::randn({B, T, D}, o);
  const at::Tensor q = at::matmul(e, w.wq.t()), k = at::matmul(e, w.wk.t()), v = at::matmul(e, w.wv.t());
  const at::Tensor scores = at::matmul(q, k.transpose(1, 2)) * at::ones({T, T}, o).tril();  // [B, T(j), T(i)]
  const at::Tensor expected = e + at::matmul(at::matmul(scores, v) / 7.0, w.proj.t());
  EXPECT_TRUE(at::allclose(linear_self_attention(e, w), expected, 1e-9, 1e-9));
}

TEST(LinearIcl, AnalyserRecoversAlignmentAndStepSizeForLargeContexts) {
  LinearIclOptions o;
  o.n = 4096;
  o.d_x = 4;
  o.eta = 0.1;
  o.batch = 64;
  o.seed = 17;
  const nlohmann::json p = linear_icl_point(o);
  EXPECT_GE(p["alignment"]["mean"].get<double>(), 0.99);
  EXPECT_NEAR(p["step_size"]["mean"].get<double>(), o.eta, 0.02 * o.eta);
  // One step of size 0.1 removes about a fifth of the squared error (1 - 0.9²).
  EXPECT_NEAR(p["loss_after"].get<double>() / p["loss_before"].get<double>(), 0.81, 0.02);
  // The control: a random target direction is not what the layer follows.
  EXPECT_LT(std::abs(p["alignment_uniform"]["mean"].get<double>()), 0.2);
}

TEST(LinearIcl, AlignmentGrowsWithTheNumberOfContextExamples) {
  const nlohmann::json sweep = linear_icl_sweep({4, 32, 256, 2048}, LinearIclOptions{});
  const auto& pts = sweep["points"];
  ASSERT_EQ(pts.size(), 4u);
  for (size_t i = 1; i < pts.size(); ++i)
    EXPECT_GT(pts[i]["alignment"]["mean"].get<double>(), pts[i - 1]["alignment"]["mean"].get<double>())
        << "n=" << pts[i]["n"];
  EXPECT_LT(pts[0]["alignment"]["mean"].get<double>(), 0.9);
  EXPECT_EQ(sweep["setting"], "linear_icl");
  EXPECT_EQ(sweep["d_x"], 4);
}

}  // namespace
}  // namespace metalm
