// The position-wise MLP of a block: c_proj(act(c_fc(x))).
//
// Parameters (GPT-2 names, torch Linear layout [out, in]):
//   c_fc.weight [d_mlp, d], c_fc.bias [d_mlp], c_proj.weight [d, d_mlp], c_proj.bias [d]
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include "metalm/config/config.hpp"

namespace metalm {

class MlpImpl : public torch::nn::Module {
 public:
  explicit MlpImpl(const ModelConfig& cfg);

  // [B, T, d] -> [B, T, d]
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear c_fc{nullptr};
  torch::nn::Linear c_proj{nullptr};

 private:
  MlpKind kind_;
};
TORCH_MODULE(Mlp);

}  // namespace metalm
