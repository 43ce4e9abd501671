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

// torch::optim::AdamW with the same update and the same checkpoint archive,
// run over flat buffers: at construction the parameters (decay group first,
// then the others) are moved into one contiguous fp32 buffer, and their
// gradients and AdamW moments live in three more, each parameter's tensor an
// alias of its slice. Backward then accumulates straight into the flat
// gradient, and zeroing it, its norm, clipping and the whole AdamW update are
// one pass each instead of one small op per parameter (the update is one
// fused loop on the CPU).
//
// Construct it after the model is on its device; replacing a parameter's
// data afterwards (Module::to, set_data) breaks the aliasing and step()
// refuses it. A .grad the caller assigns is copied into the flat buffer
// before it is used. Loading a saved state (load(), load_optimizer_state)
// copies it into the flat buffers, so archives of a plain torch AdamW load too.
class FlatAdamW : public torch::optim::AdamW {
 public:
  FlatAdamW(std::vector<torch::optim::OptimizerParamGroup> groups, torch::optim::AdamWOptions defaults);

  // One AdamW update of every parameter with its group's lr and weight decay.
  torch::Tensor step(LossClosure closure = nullptr) override;
  void load(torch::serialize::InputArchive& archive) override;

  // Sets every gradient to zero (one memset; Optimizer::zero_grad would try
  // to detach the aliases).
  void zero_grad();
  // sqrt(sum of squared gradient entries) over every parameter, reduced in
  // fp32; NaN/inf when a gradient is not finite.
  double grad_norm();
  // Scales the gradients by max_norm / (norm + 1e-6) when norm > max_norm
  // (max_norm <= 0: never), as torch.nn.utils.clip_grad_norm_ does.
  void clip(double norm, double max_norm);

  const torch::Tensor& flat_grads() const { return grads_; }

 private:
  void alias_state();  // points every parameter's AdamW state at its moment slices
  // A .grad the caller replaced (or set to none) is copied into its slice,
  // which becomes the .grad again; a replaced parameter is a ShapeError.
  void adopt_replaced_gradients();

  torch::Tensor params_, grads_, exp_avg_, exp_avg_sq_;  // [n] each
  struct Segment {
    int64_t begin, length;  // of one parameter group in the flat buffers
  };
  std::vector<Segment> segments_;  // one per param group
  int64_t steps_ = 0;
};

// FlatAdamW over the model's parameters in the two groups above (decay
// first), lr = train.lr, betas, eps from cfg. The trainer sets each step's lr
// with set_learning_rate.
std::unique_ptr<FlatAdamW> make_optimizer(CausalTransformer& model, const TrainConfig& cfg);

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// sqrt(sum of squared gradient entries) over `params` (those with a gradient),
// in double; NaN/inf when a gradient is not finite.
double global_grad_norm(const std::vector<torch::Tensor>& params);

// Scales every gradient by max_norm / norm when norm > max_norm (max_norm <=
// 0: no clipping). `norm` is the value global_grad_norm returned.
void clip_gradients(const std::vector<torch::Tensor>& params, double norm, double max_norm);

}  // namespace metalm
