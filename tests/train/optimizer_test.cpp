#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "metalm/train/optimizer.hpp"

namespace metalm {
namespace {

ModelConfig small_model(bool tied) {
  ModelConfig m;
  m.vocab_size = 11;
  m.context = 8;
  m.d_model = 8;
  m.n_layer = 1;
  m.n_head = 2;
  m.tie_embeddings = tied;
  return m;
}

using Names = std::vector<std::string>;

TEST(ParamGroups, OnlyWeightMatricesDecayByDefault) {
  torch::manual_seed(0);
  CausalTransformer model(small_model(true));
  const auto groups = param_group_names(model, TrainConfig{});
  EXPECT_EQ(groups.decay, (Names{"blocks.0.attn.c_attn.weight", "blocks.0.attn.c_proj.weight",
                                 "blocks.0.mlp.c_fc.weight", "blocks.0.mlp.c_proj.weight"}));
  EXPECT_EQ(groups.no_decay,
            (Names{"wte.weight", "wpe.weight", "blocks.0.ln_1.weight", "blocks.0.ln_1.bias",
                   "blocks.0.attn.c_attn.bias", "blocks.0.attn.c_proj.bias", "blocks.0.ln_2.weight",
                   "blocks.0.ln_2.bias", "blocks.0.mlp.c_fc.bias", "blocks.0.mlp.c_proj.bias", "ln_f.weight",
                   "ln_f.bias"}));
}

TEST(ParamGroups, DecayEmbeddingsAddsTheTables) {
  torch::manual_seed(0);
  CausalTransformer model(small_model(true));
  TrainConfig tc;
  tc.decay_embeddings = true;
  const auto decay = param_group_names(model, tc).decay;
  EXPECT_NE(std::find(decay.begin(), decay.end(), "wte.weight"), decay.end());
  EXPECT_NE(std::find(decay.begin(), decay.end(), "wpe.weight"), decay.end());
}

TEST(ParamGroups, UntiedUnembeddingIsALinearMatrixAndDecays) {
  torch::manual_seed(0);
  CausalTransformer model(small_model(false));
  const auto groups = param_group_names(model, TrainConfig{});
  EXPECT_NE(std::find(groups.decay.begin(), groups.decay.end(), "lm_head.weight"), groups.decay.end());
  EXPECT_NE(std::find(groups.no_decay.begin(), groups.no_decay.end(), "wte.weight"), groups.no_decay.end());
}

// With zero gradients Adam's update is 0, so one step only applies the
// decoupled decay p <- p (1 - lr wd): exactly on the decay group.
TEST(AdamW, OneStepWithZeroGradientsShrinksExactlyTheDecayedParameters) {
  torch::manual_seed(0);
  CausalTransformer model(small_model(true));
  TrainConfig tc;
  tc.lr = 0.1;
  tc.weight_decay = 0.5;
  auto opt = make_optimizer(model, tc);
  std::map<std::string, at::Tensor> before;
  for (const auto& p : model->named_parameters()) {
    before[p.key()] = p.value().detach().clone();
    p.value().mutable_grad() = at::zeros_like(p.value());
  }
  opt->step();
  for (const auto& p : model->named_parameters()) {
    const double factor = decays_parameter(p.key(), p.value().dim(), tc) ? 1.0 - 0.1 * 0.5 : 1.0;
    EXPECT_TRUE(at::allclose(p.value(), before[p.key()] * factor, 1e-6, 1e-7)) << p.key();
  }
}

TEST(AdamW, SetLearningRateReachesEveryGroup) {
  torch::manual_seed(0);
  CausalTransformer model(small_model(true));
  auto opt = make_optimizer(model, TrainConfig{});
  set_learning_rate(*opt, 0.25);
  ASSERT_EQ(opt->param_groups().size(), 2u);
  for (auto& g : opt->param_groups())
    EXPECT_EQ(static_cast<torch::optim::AdamWOptions&>(g.options()).lr(), 0.25);
}

TEST(GradientClipping, GlobalNormIsTheNormOfAllGradientsAndClipScalesToTheLimit) {
  auto a = at::zeros({2}).requires_grad_(true), b = at::zeros({1, 1}).requires_grad_(true);
  a.mutable_grad() = at::tensor({3.0f, 0.0f});
  b.mutable_grad() = at::tensor({{4.0f}});
  const std::vector<at::Tensor> params{a, b};
  const double norm = global_grad_norm(params);
  EXPECT_DOUBLE_EQ(norm, 5.0);
  clip_gradients(params, norm, 1.0);
  EXPECT_NEAR(global_grad_norm(params), 1.0, 1e-6);
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-6);
  clip_gradients(params, global_grad_norm(params), 10.0);  // under the limit: unchanged
  EXPECT_NEAR(a.grad()[0].item<double>(), 0.6, 1e-6);
}

TEST(GradientClipping, NonFiniteGradientGivesNonFiniteNorm) {
  auto a = at::zeros({2}).requires_grad_(true);
  a.mutable_grad() = at::tensor({1.0f, std::nanf("")});
  EXPECT_FALSE(std::isfinite(global_grad_norm({a})));
}

}  // namespace
}  // namespace metalm
