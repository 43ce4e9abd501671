// CausalTransformer: causality, the representation-site invariants of
// docs/design.md section 4, readout helpers, gradients and the GPT-2 shape.
#include <gtest/gtest.h>

#include "metalm/core/error.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/parameter_count.hpp"
#include "tiny_configs.hpp"

namespace metalm {
namespace {

using testing::config_grid;
using testing::tiny_config;

torch::Tensor random_tokens(int64_t vocab, int64_t B, int64_t T, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::randint(vocab, {B, T}, torch::kLong);
}

TEST(CausalTransformer, FutureTokensDoNotChangePastLogits) {
  for (const auto& [name, cfg] : config_grid()) {
    torch::manual_seed(1);
    CausalTransformer model(cfg);
    model->eval();
    const torch::Tensor a = random_tokens(cfg.vocab_size, 2, 12, 2);
    for (int64_t t : {0, 5, 10}) {
      torch::Tensor b = a.clone();
      b.narrow(1, t + 1, 12 - t - 1).copy_(random_tokens(cfg.vocab_size, 2, 12 - t - 1, 3 + t));
      const torch::Tensor la = model->forward(a), lb = model->forward(b);
      EXPECT_TRUE(torch::allclose(la.narrow(1, 0, t + 1), lb.narrow(1, 0, t + 1), 1e-5, 1e-6)) << name << " t=" << t;
      // The control: the future did change, and so do the logits there.
      EXPECT_FALSE(torch::allclose(la.narrow(1, t + 1, 1), lb.narrow(1, t + 1, 1))) << name << " t=" << t;
    }
  }
}

TEST(CausalTransformer, ResidualSitesSatisfyTheDesignInvariants) {
  for (const auto& [name, cfg] : config_grid()) {
    torch::manual_seed(1);
    CausalTransformer model(cfg);
    model->to(torch::kDouble);
    model->eval();
    const torch::Tensor tokens = random_tokens(cfg.vocab_size, 2, 9, 4);
    Trace trace;
    const torch::Tensor logits = model->forward(tokens, CaptureRequest::all(), trace);
    ASSERT_EQ(trace.n_layer(), cfg.n_layer);
    for (int64_t l = 0; l < cfg.n_layer; ++l) {
      const auto& pre = trace.at(Site::ResidPre, l);
      const auto& mid = trace.at(Site::ResidMid, l);
      const auto& post = trace.at(Site::ResidPost, l);
      EXPECT_EQ(post.sizes(), (std::vector<int64_t>{2, 9, cfg.d_model})) << name;
      if (l + 1 < cfg.n_layer) {
        EXPECT_TRUE(torch::equal(post, trace.at(Site::ResidPre, l + 1))) << name << l;
      }
      EXPECT_TRUE(torch::allclose(mid, pre + trace.at(Site::AttnOut, l), 0, 1e-12)) << name << l;
      EXPECT_TRUE(torch::allclose(post, mid + trace.at(Site::MlpOut, l), 0, 1e-12)) << name << l;
      EXPECT_TRUE(torch::allclose(post - pre, trace.at(Site::AttnOut, l) + trace.at(Site::MlpOut, l), 0, 1e-12))
          << name << l;
      EXPECT_EQ(trace.at(Site::AttnPattern, l).sizes(), (std::vector<int64_t>{2, cfg.n_head, 9, 9})) << name;
    }
    EXPECT_TRUE(torch::equal(trace.at(Site::Final), trace.at(Site::ResidPost, cfg.n_layer - 1))) << name;
    EXPECT_TRUE(torch::equal(model->lens_logits(trace.at(Site::Final)), logits)) << name;
    const bool additive_positions = cfg.position == PositionKind::Learned || cfg.position == PositionKind::Sinusoidal;
    EXPECT_EQ(trace.has(Site::PosEmbed), additive_positions) << name;
    const torch::Tensor x0 = additive_positions ? trace.at(Site::Embed) + trace.at(Site::PosEmbed)
                                                : trace.at(Site::Embed);
    EXPECT_TRUE(torch::allclose(trace.at(Site::ResidPre, 0), x0, 0, 1e-12)) << name;
  }
}

TEST(CausalTransformer, SoftmaxPatternsAreCausalDistributions) {
  torch::manual_seed(1);
  CausalTransformer model(tiny_config());
  Trace trace;
  model->forward(random_tokens(19, 2, 7, 5), CaptureRequest{{Site::AttnPattern}}, trace);
  const torch::Tensor p = trace.at("blocks.1.attn_pattern");
  EXPECT_TRUE(torch::allclose(p.sum(-1), torch::ones({2, 2, 7}), 1e-5, 1e-6));
  EXPECT_EQ(p.triu(1).abs().max().item<float>(), 0.0f);
}

TEST(CausalTransformer, CaptureChangesNothingAndCopiesNothing) {
  torch::manual_seed(1);
  CausalTransformer model(tiny_config());
  model->eval();
  const torch::Tensor tokens = random_tokens(19, 2, 9, 6);
  Trace trace;
  const torch::Tensor plain = model->forward(tokens);
  const torch::Tensor traced = model->forward(tokens, CaptureRequest::residual_stream(), trace);
  EXPECT_TRUE(torch::equal(plain, traced));
  // Detached captures are views of the forward pass's own tensors.
  EXPECT_EQ(trace.at(Site::ResidPost, 0).data_ptr(), trace.at(Site::ResidPre, 1).data_ptr());
  EXPECT_EQ(trace.at(Site::Final).data_ptr(), trace.at(Site::ResidPost, 2).data_ptr());
  EXPECT_FALSE(trace.at(Site::ResidMid, 1).requires_grad());
  EXPECT_FALSE(trace.has(Site::Embed));
  EXPECT_FALSE(trace.has(Site::AttnPattern, 0));
}

TEST(CausalTransformer, SiteNamesResolveToTypedSites) {
  torch::manual_seed(1);
  CausalTransformer model(tiny_config());
  Trace trace;
  model->forward(random_tokens(19, 1, 5, 7), CaptureRequest::all(), trace);
  EXPECT_EQ(site_name(Site::ResidPre, 3), "blocks.3.resid_pre");
  EXPECT_EQ(site_name(Site::Final), "final");
  EXPECT_TRUE(torch::equal(trace.at("blocks.2.mlp_out"), trace.at(Site::MlpOut, 2)));
  EXPECT_TRUE(torch::equal(trace.at("embed"), trace.at(Site::Embed)));
  const auto names = trace.names();
  EXPECT_EQ(names.front(), "embed");
  EXPECT_EQ(names.back(), "final");
  EXPECT_EQ(names.size(), 3u + 3u * 6u);
  EXPECT_THROW(trace.at("blocks.7.resid_pre"), Error);
  EXPECT_THROW(trace.at("blocks.x.resid_pre"), Error);
  EXPECT_THROW(trace.at(Site::ResidPre), Error);  // needs a layer
  EXPECT_EQ(trace.trajectory().size(), 4u);
  EXPECT_EQ(trace.trajectory(Granularity::Sublayer).size(), 7u);
}

TEST(CausalTransformer, ReadoutHelpersTakeAnyLeadingShape) {
  torch::manual_seed(1);
  CausalTransformer model(tiny_config());
  const torch::Tensor h = torch::randn({3, 4, 5, 16});
  EXPECT_EQ(model->lens_logits(h).sizes(), (std::vector<int64_t>{3, 4, 5, 19}));
  EXPECT_TRUE(torch::allclose(model->lens_logits(h)[1][2], model->lens_logits(h[1][2])));
  EXPECT_EQ(model->lens_logits(torch::randn({16})).sizes(), (std::vector<int64_t>{19}));
}

TEST(CausalTransformer, KeepGraphCapturesAllowGradientsThroughStates) {
  ModelConfig cfg = tiny_config();
  cfg.tie_embeddings = false;
  torch::manual_seed(1);
  CausalTransformer model(cfg);
  model->to(torch::kDouble);
  const torch::Tensor tokens = random_tokens(19, 2, 8, 8);
  CaptureRequest req{{Site::ResidPre}, /*keep_graph=*/true};
  Trace trace;
  const torch::Tensor logits = model->forward(tokens, req, trace);
  const torch::Tensor loss = torch::nn::functional::cross_entropy(logits.reshape({-1, 19}), tokens.reshape({-1}));
  const torch::Tensor g_x0 = torch::autograd::grad({loss}, {trace.at(Site::ResidPre, 0)}, {}, true)[0];
  loss.backward();
  // dL/dwte[v] = sum of dL/dx0 over the positions holding token v.
  const torch::Tensor expected = torch::zeros({19, 16}, torch::kDouble)
                                     .index_add_(0, tokens.reshape({-1}), g_x0.reshape({-1, 16}));
  EXPECT_TRUE(torch::allclose(model->wte->weight.grad(), expected, 1e-10, 1e-13));
}

// Central finite differences on the token embedding table (untied, so the
// table only enters as the input embedding) and on one attention matrix.
TEST(CausalTransformer, GradientsMatchFiniteDifferencesInDouble) {
  for (PositionKind pos : {PositionKind::Learned, PositionKind::Rope}) {
    for (AttentionKind att : {AttentionKind::Softmax, AttentionKind::Linear}) {
      ModelConfig cfg = tiny_config();
      cfg.n_layer = 2;
      cfg.tie_embeddings = false;
      cfg.position = pos;
      cfg.attention = att;
      torch::manual_seed(2);
      CausalTransformer model(cfg);
      model->to(torch::kDouble);
      const torch::Tensor tokens = random_tokens(19, 2, 6, 9);
      auto loss_fn = [&]() {
        return torch::nn::functional::cross_entropy(model->forward(tokens).reshape({-1, 19}), tokens.reshape({-1}));
      };
      model->zero_grad();
      loss_fn().backward();
      for (torch::Tensor param : {model->wte->weight, model->blocks[0]->named_parameters()["attn.c_attn.weight"]}) {
        const torch::Tensor grad = param.grad().clone();
        torch::NoGradGuard no_grad;
        const int64_t row = tokens[0][1].item<int64_t>();
        for (int64_t col : {0, 7, 15}) {
          auto entry = param[row][col];
          const double orig = entry.item<double>(), eps = 1e-6;
          entry.fill_(orig + eps);
          const double up = loss_fn().item<double>();
          entry.fill_(orig - eps);
          const double down = loss_fn().item<double>();
          entry.fill_(orig);
          const double numeric = (up - down) / (2 * eps);
          EXPECT_NEAR(grad[row][col].item<double>(), numeric, 1e-8 + 1e-6 * std::abs(numeric))
              << to_string(pos) << " " << to_string(att) << " col " << col;
        }
      }
    }
  }
}

TEST(CausalTransformer, Gpt2SmallHas124439808Parameters) {
  ModelConfig cfg;
  cfg.vocab_size = 50257;
  cfg.context = 1024;
  cfg.d_model = 768;
  cfg.n_layer = 12;
  cfg.n_head = 12;
  cfg.tie_embeddings = true;
  CausalTransformer model(cfg);
  EXPECT_EQ(count_parameters(*model), 124439808);
  EXPECT_TRUE(model->named_parameters().contains("blocks.11.attn.c_attn.weight"));
  EXPECT_EQ(model->named_parameters()["blocks.0.attn.c_attn.weight"].sizes(), (std::vector<int64_t>{2304, 768}));
  EXPECT_FALSE(model->named_parameters().contains("lm_head.weight"));
}

TEST(CausalTransformer, Gpt2InitialisationScalesResidualProjections) {
  ModelConfig cfg = tiny_config();
  cfg.d_model = 64;
  cfg.n_layer = 8;
  cfg.init_std = 0.02;
  cfg.tie_embeddings = false;
  torch::manual_seed(3);
  CausalTransformer model(cfg);
  auto params = model->named_parameters();
  const double proj_std = params["blocks.3.mlp.c_proj.weight"].std().item<double>();
  const double fc_std = params["blocks.3.mlp.c_fc.weight"].std().item<double>();
  EXPECT_NEAR(fc_std, 0.02, 0.001);
  EXPECT_NEAR(proj_std, 0.02 / std::sqrt(16.0), 0.0005);
  EXPECT_EQ(params["blocks.3.ln_1.weight"].min().item<float>(), 1.0f);
  EXPECT_EQ(params["blocks.3.attn.c_attn.bias"].abs().max().item<float>(), 0.0f);
  EXPECT_NEAR(params["lm_head.weight"].std().item<double>(), 0.02, 0.001);
}

TEST(CausalTransformer, ForwardFromAnUneditedStateReproducesTheLogits) {
  for (const auto& [name, cfg] : config_grid()) {
    torch::manual_seed(1);
    CausalTransformer model(cfg);
    model->eval();
    const torch::Tensor tokens = random_tokens(cfg.vocab_size, 2, 9, 4);
    Trace trace;
    const torch::Tensor logits = model->forward(tokens, CaptureRequest::residual_stream(), trace);
    for (Granularity g : {Granularity::Block, Granularity::Sublayer}) {
      const std::vector<torch::Tensor> states = trace.trajectory(g);
      for (size_t j = 0; j < states.size(); ++j)
        EXPECT_TRUE(torch::equal(model->forward_from(states[j], static_cast<int64_t>(j), g), logits))
            << name << " " << to_string(g) << " state " << j;
    }
  }
}

TEST(CausalTransformer, ForwardFromAnEditedStateChangesOnlyLaterPositions) {
  for (const auto& [name, cfg] : config_grid()) {
    torch::manual_seed(1);
    CausalTransformer model(cfg);
    model->eval();
    Trace trace;
    const torch::Tensor logits =
        model->forward(random_tokens(cfg.vocab_size, 1, 9, 4), CaptureRequest::residual_stream(), trace);
    const std::vector<torch::Tensor> states = trace.trajectory(Granularity::Sublayer);
    for (size_t j = 0; j < states.size(); ++j) {
      torch::Tensor edited = states[j].clone();
      edited.select(1, 5).add_(torch::randn({cfg.d_model}));
      const torch::Tensor out = model->forward_from(edited, static_cast<int64_t>(j), Granularity::Sublayer);
      EXPECT_TRUE(torch::allclose(out.narrow(1, 0, 5), logits.narrow(1, 0, 5), 0, 1e-6)) << name << " state " << j;
      EXPECT_FALSE(torch::allclose(out.select(1, 5), logits.select(1, 5))) << name << " state " << j;
    }
  }
}

TEST(CausalTransformer, ForwardFromRefusesAStateOutsideTheTrajectory) {
  CausalTransformer model(tiny_config());
  const torch::Tensor state = torch::zeros({1, 4, 16});
  EXPECT_THROW(model->forward_from(state, 4, Granularity::Block), ShapeError);
  EXPECT_THROW(model->forward_from(state, -1, Granularity::Sublayer), ShapeError);
  EXPECT_THROW(model->forward_from(torch::zeros({1, 4, 15}), 0, Granularity::Block), ShapeError);
  EXPECT_NO_THROW(model->forward_from(state, 6, Granularity::Sublayer));
}

TEST(CausalTransformer, RejectsSequencesLongerThanTheContext) {
  CausalTransformer model(tiny_config());
  EXPECT_THROW(model->forward(torch::zeros({1, 17}, torch::kLong)), ShapeError);
  EXPECT_THROW(model->forward(torch::zeros({17}, torch::kLong)), ShapeError);
}

TEST(CausalTransformer, EmbeddingTablesFollowTying) {
  ModelConfig cfg = tiny_config();
  CausalTransformer tied(cfg);
  EXPECT_TRUE(tied->unembedding_table().is_same(tied->embedding_table()));
  cfg.tie_embeddings = false;
  CausalTransformer untied(cfg);
  EXPECT_FALSE(untied->unembedding_table().is_same(untied->embedding_table()));
  EXPECT_EQ(untied->unembedding_table().sizes(), (std::vector<int64_t>{19, 16}));
}

}  // namespace
}  // namespace metalm
