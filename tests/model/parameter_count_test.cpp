// count_parameters against the closed form of a config, and shared tensors.
#include <gtest/gtest.h>

#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/parameter_count.hpp"
#include "tiny_configs.hpp"

namespace metalm {
namespace {

// Parameters of a pre-LN GPT-2-style model with learned positions, LayerNorm
// with biases and an MLP, written out from the shapes in causal_transformer.hpp.
int64_t closed_form(const ModelConfig& c) {
  const int64_t V = c.vocab_size, P = c.context, d = c.d_model, m = c.d_mlp, L = c.n_layer;
  const int64_t block = 2 * d                 // ln_1
                        + 3 * d * d + 3 * d   // attn.c_attn
                        + d * d + d           // attn.c_proj
                        + 2 * d               // ln_2
                        + m * d + m           // mlp.c_fc
                        + d * m + d;          // mlp.c_proj
  return V * d + P * d + L * block + 2 * d + (c.tie_embeddings ? 0 : V * d);
}

TEST(CountParameters, MatchesTheClosedFormOfTiedAndUntiedModels) {
  for (bool tied : {true, false}) {
    ModelConfig cfg = testing::tiny_config();
    cfg.tie_embeddings = tied;
    CausalTransformer model(cfg);
    EXPECT_EQ(count_parameters(*model), closed_form(cfg)) << "tied " << tied;
  }
}

TEST(CountParameters, ATensorRegisteredTwiceCountsOnce) {
  struct Owner : torch::nn::Module {
    explicit Owner(const torch::Tensor& shared) { register_parameter("w", shared); }
  };
  struct Outer : torch::nn::Module {
    Outer() {
      const torch::Tensor shared = torch::zeros({3, 5});
      register_parameter("w", shared);
      register_module("inner", std::make_shared<Owner>(shared));
      register_parameter("b", torch::zeros({7}));
    }
  };
  const Outer outer;
  ASSERT_EQ(outer.parameters().size(), 3u);  // the shared tensor is listed twice
  EXPECT_EQ(count_parameters(outer), 3 * 5 + 7);
}

}  // namespace
}  // namespace metalm
