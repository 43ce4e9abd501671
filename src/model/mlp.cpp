#include "metalm/model/mlp.hpp"

#include <ATen/ATen.h>

#include "metalm/core/error.hpp"
#include "linear.hpp"

namespace metalm {

MlpImpl::MlpImpl(const ModelConfig& cfg) : kind_(cfg.mlp) {
  if (kind_ == MlpKind::None) throw ConfigError("model.mlp: an Mlp module needs an activation, not none");
  c_fc = register_module("c_fc", torch::nn::Linear(torch::nn::LinearOptions(cfg.d_model, cfg.d_mlp).bias(cfg.bias)));
  c_proj = register_module("c_proj", torch::nn::Linear(torch::nn::LinearOptions(cfg.d_mlp, cfg.d_model).bias(cfg.bias)));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  torch::Tensor h = apply_linear(c_fc, x);  // [B, T, d_mlp]
  switch (kind_) {
    case MlpKind::Gelu: h = at::gelu(h); break;
    case MlpKind::GeluTanh: h = at::gelu(h, "tanh"); break;
    case MlpKind::Relu: h = at::relu(h); break;
    case MlpKind::None: break;
  }
  return apply_linear(c_proj, h);  // [B, T, d]
}

}  // namespace metalm
