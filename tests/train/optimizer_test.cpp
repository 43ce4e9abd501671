#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "metalm/core/error.hpp"
#include "metalm/train/optimizer.hpp"
#include "../model/tiny_configs.hpp"

namespace metalm {
namespace {

ModelConfig small_model(bool tied) {
  ModelConfig m = testing::small_config(11, 8, 8, 1);
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


// The same parameter groups as make_optimizer, for torch's own AdamW.
std::unique_ptr<torch::optim::AdamW> torch_adamw(CausalTransformer& model, const TrainConfig& tc) {
  std::vector<at::Tensor> decay, other;
  for (const auto& p : model->named_parameters())
    (decays_parameter(p.key(), p.value().dim(), tc) ? decay : other).push_back(p.value());
  auto opts = [&](double wd) {
    auto o = std::make_unique<torch::optim::AdamWOptions>(tc.lr);
    o->betas(std::make_tuple(tc.beta1, tc.beta2)).eps(tc.adam_eps).weight_decay(wd);
    return o;
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, opts(tc.weight_decay));
  groups.emplace_back(other, opts(0.0));
  return std::make_unique<torch::optim::AdamW>(std::move(groups), torch::optim::AdamWOptions(tc.lr));
}

// Two copies of one model: equal weights, separate tensors.
std::pair<CausalTransformer, CausalTransformer> twin_models() {
  torch::manual_seed(3);
  CausalTransformer a(small_model(true));
  torch::manual_seed(3);
  CausalTransformer b(small_model(true));
  return {a, b};
}

// Seeded gradients of step `s`, the same for both twins.
void set_gradients(CausalTransformer& model, int s) {
  at::NoGradGuard no_grad;
  int i = 0;
  for (auto& p : model->parameters()) {
    const at::Tensor g = at::randn(p.sizes(), at::detail::createCPUGenerator(100 * s + i++));
    if (p.grad().defined())
      p.mutable_grad().copy_(g);
    else
      p.mutable_grad() = g;
  }
}

void expect_same_parameters(CausalTransformer& a, CausalTransformer& b, double rtol) {
  auto pb = b->named_parameters();
  for (const auto& p : a->named_parameters())
    EXPECT_TRUE(at::allclose(p.value(), pb[p.key()], rtol, 1e-7)) << p.key();
}

// The fused flat update is torch's AdamW: same weights after several steps
// with changing learning rates, decay on the decay group only.
TEST(FlatAdamW, FollowsTorchAdamWStepForStep) {
  auto [a, b] = twin_models();
  TrainConfig tc;
  tc.lr = 0.05;
  tc.weight_decay = 0.3;
  auto flat = make_optimizer(a, tc);
  auto ref = torch_adamw(b, tc);
  for (int s = 0; s < 6; ++s) {
    set_learning_rate(*flat, 0.05 / (1 + s));
    set_learning_rate(*ref, 0.05 / (1 + s));
    set_gradients(a, s);
    set_gradients(b, s);
    flat->step();
    ref->step();
  }
  expect_same_parameters(a, b, 1e-5);
}

// Every parameter and gradient is a slice of the flat buffers, so a backward
// pass fills flat_grads() and the norm of it is the global gradient norm.
TEST(FlatAdamW, ParametersAndGradientsAreSlicesOfTheFlatBuffers) {
  torch::manual_seed(0);
  CausalTransformer model(small_model(true));
  auto opt = make_optimizer(model, TrainConfig{});
  const auto tokens = at::randint(0, 11, {2, 8}, at::kLong);
  model->forward(tokens).pow(2).mean().backward();
  std::vector<at::Tensor> grads;
  for (auto& group : opt->param_groups())
    for (auto& p : group.params()) grads.push_back(p.grad().reshape({-1}));
  EXPECT_TRUE(at::equal(at::cat(grads), opt->flat_grads()));
  EXPECT_GT(opt->flat_grads().abs().sum().item<double>(), 0.0);
  EXPECT_NEAR(opt->grad_norm(), global_grad_norm(model->parameters()), 1e-5 * opt->grad_norm());
  opt->zero_grad();
  EXPECT_EQ(global_grad_norm(model->parameters()), 0.0);
}

TEST(FlatAdamW, ClipScalesTheGradientsToTheLimit) {
  torch::manual_seed(0);
  CausalTransformer model(small_model(true));
  auto opt = make_optimizer(model, TrainConfig{});
  set_gradients(model, 1);
  const double norm = opt->grad_norm();
  ASSERT_GT(norm, 1.0);
  opt->clip(norm, 1.0);
  EXPECT_NEAR(opt->grad_norm(), 1.0, 1e-5);
  opt->clip(opt->grad_norm(), 10.0);  // under the limit: unchanged
  EXPECT_NEAR(opt->grad_norm(), 1.0, 1e-5);
}

// A .grad replaced by the caller (set_gradients assigns new tensors on the
// first call) is the one the update uses.
TEST(FlatAdamW, AGradientAssignedByTheCallerIsUsed) {
  auto [a, b] = twin_models();
  TrainConfig tc;
  auto flat = make_optimizer(a, tc);
  auto ref = torch_adamw(b, tc);
  for (auto& p : a->parameters()) p.mutable_grad() = at::Tensor();  // set to none
  set_gradients(a, 0);                                             // then assigned
  set_gradients(b, 0);
  flat->step();
  ref->step();
  expect_same_parameters(a, b, 1e-5);
}

// An archive saved by torch's own AdamW restores into the flat buffers: the
// next step is the same as torch's.
TEST(FlatAdamW, LoadsAnArchiveOfTorchAdamW) {
  auto [a, b] = twin_models();
  TrainConfig tc;
  tc.lr = 0.02;
  auto ref = torch_adamw(b, tc);
  for (int s = 0; s < 3; ++s) {
    set_gradients(b, s);
    ref->step();
  }
  torch::serialize::OutputArchive out;
  ref->save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  {
    at::NoGradGuard no_grad;
    auto pb = b->named_parameters();
    for (auto& p : a->named_parameters()) p.value().copy_(pb[p.key()]);
  }
  auto flat = make_optimizer(a, tc);
  torch::serialize::InputArchive in;
  std::istringstream read(bytes.str());
  in.load_from(read);
  flat->load(in);
  set_gradients(a, 3);
  set_gradients(b, 3);
  flat->step();
  ref->step();
  expect_same_parameters(a, b, 1e-5);
}

TEST(FlatAdamW, RefusesParametersReplacedAfterItWasMade) {
  torch::manual_seed(0);
  CausalTransformer model(small_model(true));
  auto opt = make_optimizer(model, TrainConfig{});
  model->to(at::kDouble);
  EXPECT_THROW(opt->step(), ShapeError);
}

}  // namespace
}  // namespace metalm
