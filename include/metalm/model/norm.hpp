// The normalisation layer of a block: LayerNorm, RMSNorm or none.
//
// Parameters: "weight" [d] (gain, initialised to 1) for layernorm and rmsnorm,
// and "bias" [d] (initialised to 0) for layernorm when config.bias is set.
// With kind None the module has no parameters and returns its input.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "metalm/config/config.hpp"

namespace metalm {

class NormImpl : public torch::nn::Module {
 public:
  NormImpl(NormKind kind, int64_t d_model, double eps, bool bias);

  // x: [..., d] -> [..., d]; statistics over the last dimension only, so any
  // leading shape works (the logit lens applies it to single states).
  torch::Tensor forward(const torch::Tensor& x);

  NormKind kind() const { return kind_; }

  torch::Tensor weight;  // undefined for None
  torch::Tensor bias;    // undefined unless layernorm with bias

 private:
  NormKind kind_;
  int64_t d_model_;
  double eps_;
};
TORCH_MODULE(Norm);

}  // namespace metalm
