// Non-finite weights are refused where they enter (every output of a model
// holding one NaN is NaN), naming the tensor, unless forensics asks for them.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <limits>

#include "metalm/core/error.hpp"
#include "metalm/io/safetensors.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/weights.hpp"
#include "tiny_configs.hpp"

namespace metalm {
namespace {

std::string temp_path(const std::string& name) {
  return std::string(METALM_BINARY_DIR) + "/test_nonfinite_" + std::to_string(::getpid()) + "_" + name;
}

// The weights of a fresh tiny model with `value` written at flat index 5 of `tensor`.
std::map<std::string, torch::Tensor> poisoned(CausalTransformer& model, const std::string& tensor, double value) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : model->named_parameters()) out[p.key()] = p.value().detach().clone();
  out.at(tensor).view({-1})[5] = value;
  return out;
}

TEST(NonFiniteWeights, NanInAFileIsANumericErrorNamingTheTensorAndTheModelIsUntouched) {
  torch::manual_seed(1);
  CausalTransformer source(testing::tiny_config());
  const std::string path = temp_path("nan.safetensors");
  write_safetensors(path, poisoned(source, "blocks.1.mlp.c_fc.weight", std::nan("")));

  torch::manual_seed(2);
  CausalTransformer target(testing::tiny_config());
  const torch::Tensor before = target->named_parameters()["wte.weight"].clone();
  try {
    load_weights(*target, path);
    FAIL() << "no error";
  } catch (const NumericError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path + ": tensor 'blocks.1.mlp.c_fc.weight' holds 1 non-finite value"), std::string::npos)
        << msg;
    EXPECT_NE(msg.find("flat index 5, is nan"), std::string::npos) << msg;
  }
  EXPECT_TRUE(torch::equal(target->named_parameters()["wte.weight"], before));  // nothing was copied
  std::remove(path.c_str());
}

TEST(NonFiniteWeights, InfinityInMemoryIsRefusedToo) {
  torch::manual_seed(1);
  CausalTransformer model(testing::tiny_config());
  const auto tensors = poisoned(model, "ln_f.weight", -std::numeric_limits<double>::infinity());
  try {
    load_weights(*model, tensors, "imported.safetensors");
    FAIL() << "no error";
  } catch (const NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("'ln_f.weight'"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("is -inf"), std::string::npos) << e.what();
  }
}

TEST(NonFiniteWeights, AllowNonfiniteLoadsThemAsTheyAre) {
  torch::manual_seed(1);
  CausalTransformer model(testing::tiny_config());
  const auto tensors = poisoned(model, "wte.weight", std::nan(""));
  load_weights(*model, tensors, "forensics", LoadWeightsOptions{/*allow_nonfinite=*/true});
  EXPECT_TRUE(std::isnan(model->named_parameters()["wte.weight"].view({-1})[5].item<double>()));
  EXPECT_EQ(model->named_parameters()["wte.weight"].isnan().sum().item<int64_t>(), 1);
}

}  // namespace
}  // namespace metalm
