// The models trained on in-context regression (docs/design.md 8.3): L layers
// of self-attention on the residual stream of tokens e ∈ R^D, D = d_x + d_y,
// no MLP, no norm, no positions. Layer l, head h, with the key-query matrix
// W_KQ = W_Kᵀ W_Q and the value-projection matrix W_PV = P W_V merged (the
// products are all a linear layer computes; von Oswald et al. analyse them):
//
//   linear:   e_j ← e_j + Σ_h W_PV^h (1/N) Σ_i e_i (e_iᵀ W_KQ^h e_j)
//   softmax:  e_j ← e_j + Σ_h W_PV^h Σ_i softmax_i(e_iᵀ W_KQ^h e_j) e_i
//
// with i over the N context tokens (the query is never a key), j over every
// token. The prediction is read from the query's y-slot with a minus sign,
// ŷ = −e_q[d_x:], so that a stack of GD layers can keep the context's y-slots
// as residuals y_i − Ŵ x_i (docs/design.md 8.3).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <string>
#include <vector>

namespace metalm::icl {

enum class Attention { Linear, Softmax };
std::string attention_name(Attention a);

struct ModelOptions {
  int64_t d_x = 10, d_y = 1;
  int64_t layers = 1;
  int64_t heads = 1;
  Attention attention = Attention::Linear;
  double init_std = 0.02;
};

struct IclTransformerImpl : torch::nn::Module {
  explicit IclTransformerImpl(const ModelOptions& options);

  // tokens [B, N+1, D] -> the residual stream before every layer and after
  // the last: L+1 states [B, N+1, D].
  std::vector<torch::Tensor> states(const torch::Tensor& tokens) const;
  // Layer l applied to a state [B, N+1, D] (its residual included).
  torch::Tensor layer(int64_t l, const torch::Tensor& e) const;
  // ŷ [B, d_y] of the last state.
  torch::Tensor forward(const torch::Tensor& tokens) const;
  // −(the query's y-slot) of a state [B, N+1, D]: [B, d_y].
  torch::Tensor readout(const torch::Tensor& state) const;

  ModelOptions options;
  std::vector<torch::Tensor> w_kq, w_pv;  // per layer [H, D, D], named w_kq_<l> / w_pv_<l>
};
TORCH_MODULE(IclTransformer);

// The weights of layer `layer` of a linear model (head 0; other heads 0)
// that takes one preconditioned GD step ŷ = η C P x_q on the context's
// residuals: W_KQ = blockdiag(P, 0), W_PV = blockdiag(−γ I, −η I). P = I
// gives one plain GD step; γ > 0 adds GD++'s correction x ← (I − γ Σ̂) x.
void set_gd_step(IclTransformerImpl& model, int64_t layer, double eta, const torch::Tensor& preconditioner,
                 double gamma = 0.0);

}  // namespace metalm::icl
