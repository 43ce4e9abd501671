// save_weights / load_weights: exact round trip, strict names and shapes.
#include <gtest/gtest.h>
#include <unistd.h>

#include "metalm/core/error.hpp"
#include "metalm/io/safetensors.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/weights.hpp"
#include "support/error_of.hpp"
#include "tiny_configs.hpp"

namespace metalm {
namespace {

std::string temp_path(const std::string& name) {
  return std::string(METALM_BINARY_DIR) + "/test_weights_" + std::to_string(::getpid()) + "_" + name;
}

std::string load_error(torch::nn::Module& m, const std::string& path) {
  return test::error_of<FormatError>([&] { load_weights(m, path); });
}

TEST(Weights, RoundTripReproducesTheModelExactly) {
  ModelConfig cfg = testing::tiny_config();
  cfg.position = PositionKind::Rope;
  cfg.tie_embeddings = false;
  torch::manual_seed(1);
  CausalTransformer a(cfg);
  torch::manual_seed(2);
  CausalTransformer b(cfg);
  const std::string path = temp_path("rt.safetensors");
  save_weights(*a, path, {{"note", "test"}});
  const auto meta = load_weights(*b, path);
  EXPECT_EQ(meta.at("note"), "test");
  const torch::Tensor tokens = torch::randint(19, {2, 7}, torch::kLong);
  EXPECT_TRUE(torch::equal(a->forward(tokens), b->forward(tokens)));

  const SafeTensorsFile file = read_safetensors(path);
  EXPECT_EQ(file.tensors.size(), a->parameters().size());
  EXPECT_EQ(file.tensors.count("rope_cos"), 0u);  // buffers are derived, not saved
  EXPECT_EQ(file.tensors.count("blocks.2.mlp.c_fc.weight"), 1u);
  std::remove(path.c_str());
}

TEST(Weights, TiedModelStoresTheEmbeddingOnce) {
  torch::manual_seed(1);
  CausalTransformer a(testing::tiny_config());
  const std::string path = temp_path("tied.safetensors");
  save_weights(*a, path);
  const SafeTensorsFile file = read_safetensors(path);
  EXPECT_EQ(file.tensors.count("wte.weight"), 1u);
  EXPECT_EQ(file.tensors.count("lm_head.weight"), 0u);
  std::remove(path.c_str());
}

TEST(Weights, LoadIntoADoubleModelConverts) {
  torch::manual_seed(1);
  CausalTransformer a(testing::tiny_config());
  CausalTransformer b(testing::tiny_config());
  b->to(torch::kDouble);
  const std::string path = temp_path("dbl.safetensors");
  save_weights(*a, path);
  load_weights(*b, path);
  EXPECT_EQ(b->wte->weight.scalar_type(), torch::kDouble);
  EXPECT_TRUE(torch::equal(b->wte->weight.to(torch::kFloat), a->wte->weight));
  std::remove(path.c_str());
}

TEST(Weights, MissingUnexpectedAndMisshapenTensorsAreNamed) {
  ModelConfig cfg = testing::tiny_config();
  torch::manual_seed(1);
  CausalTransformer model(cfg);
  const torch::Tensor before = model->wte->weight.clone();
  std::map<std::string, torch::Tensor> params;
  for (const auto& p : model->named_parameters()) params[p.key()] = p.value().detach();
  const std::string path = temp_path("bad.safetensors");

  auto missing = params;
  missing.erase("blocks.1.ln_2.bias");
  write_safetensors(path, missing);
  std::string msg = load_error(*model, path);
  EXPECT_NE(msg.find("missing tensor 'blocks.1.ln_2.bias'"), std::string::npos) << msg;

  auto extra = params;
  extra["lm_head.weight"] = torch::zeros({19, 16});
  write_safetensors(path, extra);
  msg = load_error(*model, path);
  EXPECT_NE(msg.find("unexpected tensor 'lm_head.weight'"), std::string::npos) << msg;

  auto misshapen = params;
  misshapen["wte.weight"] = torch::zeros({20, 16});
  misshapen["blocks.0.ln_1.weight"] = torch::zeros({16});
  write_safetensors(path, misshapen);
  msg = load_error(*model, path);
  EXPECT_NE(msg.find("'wte.weight' has shape [20, 16]"), std::string::npos) << msg;
  // Nothing was loaded from the bad file.
  EXPECT_TRUE(torch::equal(model->wte->weight, before));
  EXPECT_EQ(model->named_parameters()["blocks.0.ln_1.weight"].min().item<float>(), 1.0f);
  std::remove(path.c_str());
}

}  // namespace
}  // namespace metalm
