#include "metalm/model/mlp.hpp"

#include <ATen/ATen.h>

#include "metalm/core/error.hpp"
#include "metalm/model/fused.hpp"
#include "linear.hpp"

namespace metalm {

MlpImpl::MlpImpl(const ModelConfig& cfg) : kind_(cfg.mlp) {
  if (kind_ == MlpKind::None) throw ConfigError("model.mlp: an Mlp module needs an activation, not none");
  c_fc = register_module("c_fc", torch::nn::Linear(torch::nn::LinearOptions(cfg.d_model, cfg.d_mlp).bias(cfg.bias)));
  c_proj = register_module("c_proj", torch::nn::Linear(torch::nn::LinearOptions(cfg.d_mlp, cfg.d_model).bias(cfg.bias)));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  if (kind_ == MlpKind::Gelu && fused_kernels_apply(x) && (!c_fc->bias.defined() || fused_kernels_apply(c_fc->bias))) {
    // c_fc's product without its bias, which the fused GELU adds in its own
    // pass (addmm would first copy the bias into every row of the output).
    const torch::Tensor y = at::linear(x, c_fc->weight);  // [B, T, d_mlp], bf16 under autocast
    if (fused_kernels_apply(y)) return apply_linear(c_proj, bias_gelu(y, c_fc->bias));
    return apply_linear(c_proj, at::gelu(c_fc->bias.defined() ? y + c_fc->bias : y));
  }
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
