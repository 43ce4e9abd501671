#include "metalm/model/norm.hpp"

#include <ATen/ATen.h>

namespace metalm {

NormImpl::NormImpl(NormKind kind, int64_t d_model, double eps, bool bias)
    : kind_(kind), d_model_(d_model), eps_(eps) {
  if (kind_ == NormKind::None) return;
  weight = register_parameter("weight", torch::ones({d_model}));
  if (kind_ == NormKind::LayerNorm && bias) this->bias = register_parameter("bias", torch::zeros({d_model}));
}

torch::Tensor NormImpl::forward(const torch::Tensor& x) {
  switch (kind_) {
    case NormKind::LayerNorm:
      return at::layer_norm(x, {d_model_}, weight, bias, eps_);
    case NormKind::RmsNorm:
      // x / sqrt(mean(x^2) + eps) * g
      return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps_) * weight;
    case NormKind::None:
      break;
  }
  return x;
}

}  // namespace metalm
