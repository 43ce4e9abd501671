// KV-cached decoding gives the same logits and tokens as recomputing.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>

#include "metalm/core/error.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "tiny_configs.hpp"

namespace metalm {
namespace {

// generate's sampling rule written out without a cache: every token is drawn
// from a full forward pass over the last `context` tokens. The reference that
// the cached decoding must reproduce token for token. prompt: [T].
torch::Tensor recomputed_generate(CausalTransformer& model, const torch::Tensor& prompt, int64_t max_new_tokens,
                                  double temperature, int64_t top_k, uint64_t seed) {
  model->eval();
  torch::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const int64_t context = model->config().context;
  torch::Tensor seq = prompt.unsqueeze(0);  // [1, T]
  for (int64_t i = 0; i < max_new_tokens; ++i) {
    const int64_t len = seq.size(1);
    const torch::Tensor window = seq.narrow(1, std::max<int64_t>(0, len - context), std::min(len, context));
    torch::Tensor logits = model->forward(window).select(1, -1) / temperature;  // [1, V]
    if (top_k > 0 && top_k < logits.size(-1)) {
      const torch::Tensor kth = std::get<0>(logits.topk(top_k, -1)).narrow(-1, top_k - 1, 1);  // [1, 1]
      logits = logits.masked_fill(logits < kth, -std::numeric_limits<double>::infinity());
    }
    const torch::Tensor next = at::multinomial(at::softmax(logits.to(at::kDouble), -1), 1, false, gen);  // [1, 1]
    seq = torch::cat({seq, next}, 1);
  }
  return seq.squeeze(0);
}

TEST(Generation, CachedLogitsMatchTheFullForwardPass) {
  for (const auto& [name, cfg] : testing::config_grid()) {
    torch::manual_seed(1);
    CausalTransformer model(cfg);
    model->eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor tokens = torch::randint(cfg.vocab_size, {2, 11}, torch::kLong);
    const torch::Tensor full = model->forward(tokens);
    KVCache cache = model->make_kv_cache(2, 11);
    // A prefix of 4, then one token at a time, then the last 3 at once.
    std::vector<torch::Tensor> parts{model->forward_cached(tokens.narrow(1, 0, 4), cache)};
    for (int64_t t = 4; t < 8; ++t) parts.push_back(model->forward_cached(tokens.narrow(1, t, 1), cache));
    parts.push_back(model->forward_cached(tokens.narrow(1, 8, 3), cache));
    EXPECT_EQ(cache.length, 11);
    EXPECT_TRUE(torch::allclose(torch::cat(parts, 1), full, 1e-4, 1e-5)) << name;
    EXPECT_THROW(model->forward_cached(tokens.narrow(1, 0, 1), cache), ShapeError) << name;
  }
}

TEST(Generation, CachedSamplingGivesTheTokensOfRecomputingEveryStep) {
  for (const auto& [name, cfg] : testing::config_grid()) {
    torch::manual_seed(1);
    CausalTransformer model(cfg);
    const torch::Tensor prompt = torch::tensor({3, 1, 4, 1, 5}, torch::kLong);
    for (uint64_t seed : {0, 1, 2}) {
      for (int64_t top_k : {0, 5}) {
        const torch::Tensor a = model->generate(prompt, 8, 1.0, top_k, seed);
        const torch::Tensor b = recomputed_generate(model, prompt, 8, 1.0, top_k, seed);
        ASSERT_EQ(a.sizes(), (std::vector<int64_t>{13})) << name;
        EXPECT_TRUE(torch::equal(a, b)) << name << " seed " << seed << " top_k " << top_k;
        EXPECT_TRUE(torch::equal(a.narrow(0, 0, 5), prompt)) << name;
      }
    }
  }
}

TEST(Generation, SameSeedSameTokensDifferentSeedDifferentTokens) {
  torch::manual_seed(1);
  CausalTransformer model(testing::tiny_config());
  const torch::Tensor prompt = torch::tensor({{3, 1, 4}}, torch::kLong);
  const torch::Tensor a = model->generate(prompt, 12, 1.5, 0, 7);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{1, 15}));
  EXPECT_TRUE(torch::equal(a, model->generate(prompt, 12, 1.5, 0, 7)));
  EXPECT_FALSE(torch::equal(a, model->generate(prompt, 12, 1.5, 0, 8)));
}

TEST(Generation, GreedyPicksTheArgmaxAndTopOneIsGreedy) {
  torch::manual_seed(1);
  CausalTransformer model(testing::tiny_config());
  model->eval();
  const torch::Tensor prompt = torch::tensor({2, 7, 1}, torch::kLong);
  const torch::Tensor greedy = model->generate(prompt, 6, 0.0, 0, 0);
  EXPECT_TRUE(torch::equal(greedy, model->generate(prompt, 6, 1.0, 1, 123)));
  torch::NoGradGuard no_grad;
  const torch::Tensor logits = model->forward(greedy.narrow(0, 0, 8).unsqueeze(0));
  EXPECT_EQ(logits[0][7].argmax().item<int64_t>(), greedy[8].item<int64_t>());
}

TEST(Generation, SlidesPastTheContextAndRestoresTrainingMode) {
  torch::manual_seed(1);
  CausalTransformer model(testing::tiny_config());  // context 16
  model->train();
  const torch::Tensor prompt = torch::tensor({1, 2, 3, 4, 5}, torch::kLong);
  const torch::Tensor a = model->generate(prompt, 20, 1.0, 0, 3);
  EXPECT_TRUE(model->is_training());
  EXPECT_EQ(a.size(0), 25);
  EXPECT_TRUE(torch::equal(a, recomputed_generate(model, prompt, 20, 1.0, 0, 3)));
}

}  // namespace
}  // namespace metalm
