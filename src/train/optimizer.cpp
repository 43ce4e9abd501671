#include "metalm/train/optimizer.hpp"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>

namespace metalm {

bool decays_parameter(const std::string& name, int64_t dim, const TrainConfig& cfg) {
  // Vectors (biases, norm gains) carry scale and offset, not features: decaying
  // them only fights the normalisation.
  if (dim < 2) return false;
  const bool embedding = name == "wte.weight" || name == "wpe.weight";
  return !embedding || cfg.decay_embeddings;
}

ParamGroupNames param_group_names(CausalTransformer& model, const TrainConfig& cfg) {
  ParamGroupNames out;
  for (const auto& item : model->named_parameters()) {
    if (decays_parameter(item.key(), item.value().dim(), cfg))
      out.decay.push_back(item.key());
    else
      out.no_decay.push_back(item.key());
  }
  return out;
}

std::unique_ptr<torch::optim::AdamW> make_optimizer(CausalTransformer& model, const TrainConfig& cfg) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& item : model->named_parameters())
    (decays_parameter(item.key(), item.value().dim(), cfg) ? decay : no_decay).push_back(item.value());

  auto options = [&](double weight_decay) {
    auto o = std::make_unique<torch::optim::AdamWOptions>(cfg.lr);
    o->betas(std::make_tuple(cfg.beta1, cfg.beta2)).eps(cfg.adam_eps).weight_decay(weight_decay);
    return o;
  };
  // Both groups always exist (possibly empty), so a checkpoint's optimizer
  // state has the same group layout whatever the config.
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, options(cfg.weight_decay));
  groups.emplace_back(no_decay, options(0.0));
  return std::make_unique<torch::optim::AdamW>(std::move(groups),
                                               torch::optim::AdamWOptions(cfg.lr)
                                                   .betas(std::make_tuple(cfg.beta1, cfg.beta2))
                                                   .eps(cfg.adam_eps)
                                                   .weight_decay(0.0));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

double global_grad_norm(const std::vector<torch::Tensor>& params) {
  at::NoGradGuard no_grad;
  double sum = 0.0;
  for (const auto& p : params) {
    const auto& g = p.grad();
    if (!g.defined()) continue;
    sum += g.to(at::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(sum);
}

void clip_gradients(const std::vector<torch::Tensor>& params, double norm, double max_norm) {
  if (max_norm <= 0.0 || !(norm > max_norm)) return;
  at::NoGradGuard no_grad;
  // The 1e-6 as in torch.nn.utils.clip_grad_norm_, so results match PyTorch.
  const double scale = max_norm / (norm + 1e-6);
  for (const auto& p : params) {
    auto g = p.grad();
    if (g.defined()) g.mul_(scale);
  }
}

}  // namespace metalm
