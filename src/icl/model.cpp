#include "metalm/icl/model.hpp"

#include <torch/torch.h>

#include "metalm/core/error.hpp"

namespace metalm::icl {

std::string attention_name(Attention a) { return a == Attention::Linear ? "linear" : "softmax"; }

IclTransformerImpl::IclTransformerImpl(const ModelOptions& o) : options(o) {
  if (o.d_x < 1 || o.d_y < 1 || o.layers < 1 || o.heads < 1)
    throw ConfigError("icl model: d_x, d_y, layers and heads must be at least 1");
  const int64_t d = o.d_x + o.d_y;
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string layer = std::to_string(l);
    w_kq.push_back(register_parameter("w_kq_" + layer, torch::randn({o.heads, d, d}) * o.init_std));
    w_pv.push_back(register_parameter("w_pv_" + layer, torch::randn({o.heads, d, d}) * o.init_std));
  }
}

std::vector<torch::Tensor> IclTransformerImpl::states(const torch::Tensor& tokens) const {
  const int64_t d = options.d_x + options.d_y;
  if (tokens.dim() != 3 || tokens.size(2) != d || tokens.size(1) < 2)
    throw ShapeError("icl model: expected tokens [B, N+1, " + std::to_string(d) + "] with N >= 1");
  std::vector<torch::Tensor> out{tokens};
  for (int64_t l = 0; l < options.layers; ++l) out.push_back(layer(l, out.back()));
  return out;
}

torch::Tensor IclTransformerImpl::layer(int64_t l, const torch::Tensor& e) const {
  const int64_t n = e.size(1) - 1;
  const torch::Tensor ctx = e.narrow(1, 0, n);                                      // keys and values: [B, N, D]
  const torch::Tensor q = torch::einsum("btd,hed->bhte", {e, w_kq.at(l)});          // W_KQ e_j: [B, H, T, D]
  torch::Tensor scores = torch::matmul(q, ctx.unsqueeze(1).transpose(2, 3));        // e_iᵀ W_KQ e_j: [B, H, T, N]
  scores = options.attention == Attention::Linear ? scores / static_cast<double>(n) : torch::softmax(scores, -1);
  const torch::Tensor mixed = torch::matmul(scores, ctx.unsqueeze(1));              // [B, H, T, D]
  return e + torch::einsum("bhtd,hed->bte", {mixed, w_pv.at(l)});                   // Σ_h W_PV^h (·): [B, T, D]
}

torch::Tensor IclTransformerImpl::readout(const torch::Tensor& state) const {
  return -state.select(1, state.size(1) - 1).narrow(1, options.d_x, options.d_y);  // [B, d_y]
}

torch::Tensor IclTransformerImpl::forward(const torch::Tensor& tokens) const { return readout(states(tokens).back()); }

void set_gd_step(IclTransformerImpl& model, int64_t layer, double eta, const torch::Tensor& preconditioner,
                 double gamma) {
  const ModelOptions& o = model.options;
  if (layer < 0 || layer >= o.layers) throw ConfigError("set_gd_step: no layer " + std::to_string(layer));
  if (preconditioner.sizes() != torch::IntArrayRef{o.d_x, o.d_x})
    throw ShapeError("set_gd_step: the preconditioner must be [d_x, d_x]");
  torch::NoGradGuard no_grad;
  torch::Tensor kq = model.w_kq[layer], pv = model.w_pv[layer];
  kq.zero_();
  pv.zero_();
  // e_iᵀ W_KQ e_q = x_iᵀ P x_q; W_PV e_i = (0, −η y_i); so the query's y-slot
  // gains −η C P x_q and ŷ = η C P x_q. W_PV e_i's x part −γ x_i moves
  // every x_j by −γ Σ̂ P x_j (with P = I, GD++'s correction).
  kq[0].narrow(0, 0, o.d_x).narrow(1, 0, o.d_x).copy_(preconditioner);
  pv[0].narrow(0, 0, o.d_x).narrow(1, 0, o.d_x).copy_(-gamma * torch::eye(o.d_x, kq.options()));
  pv[0].narrow(0, o.d_x, o.d_y).narrow(1, o.d_x, o.d_y).copy_(-eta * torch::eye(o.d_y, kq.options()));
}

}  // namespace metalm::icl
