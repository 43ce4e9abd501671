// AdamW for the outer loop, with decoupled weight decay on weight matrices
// only: biases, norm gains and (unless train.decay_embeddings) the embedding
// tables wte/wpe are not decayed. With tied embeddings wte is also the
// unembedding and follows decay_embeddings; an untied lm_head is a linear
// layer's matrix and decays.
#pragma once

#include <torch/optim/adamw.h>

#include <memory>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"
#include "metalm/model/causal_transformer.hpp"

namespace metalm {

// Whether the parameter `name` (as in named_parameters) of shape `dim`
// dimensions is weight-decayed under `cfg`.
bool decays_parameter(const std::string& name, int64_t dim, const TrainConfig& cfg);

// The parameter names of each AdamW group, in named_parameters order.
struct ParamGroupNames {
  std::vector<std::string> decay;     // group 0: weight_decay = train.weight_decay
  std::vector<std::string> no_decay;  // group 1: weight_decay = 0
};
ParamGroupNames param_group_names(CausalTransformer& model, const TrainConfig& cfg);

// AdamW over the model's parameters in the two groups above (decay first),
// lr = train.lr, betas, eps from cfg. The trainer sets each step's lr with
// set_learning_rate.
std::unique_ptr<torch::optim::AdamW> make_optimizer(CausalTransformer& model, const TrainConfig& cfg);

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// sqrt(sum of squared gradient entries) over `params` (those with a gradient),
// in double; NaN/inf when a gradient is not finite.
double global_grad_norm(const std::vector<torch::Tensor>& params);

// Scales every gradient by max_norm / norm when norm > max_norm (max_norm <=
// 0: no clipping). `norm` is the value global_grad_norm returned.
void clip_gradients(const std::vector<torch::Tensor>& params, double norm, double max_norm);

}  // namespace metalm
