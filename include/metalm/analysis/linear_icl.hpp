// The constructed ground truth for the analyser: one linear self-attention
// layer whose weights make it perform exactly one gradient-descent step on
// in-context linear regression (von Oswald et al. 2023, "Transformers learn
// in-context by gradient descent"). See linear_icl.cpp for the derivation.
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <vector>

#include "metalm/analysis/objective.hpp"
#include "metalm/analysis/trajectory.hpp"

namespace metalm {

struct LinearIclOptions {
  int64_t n = 4096;     // context examples (x_i, y_i) per sequence
  int64_t d_x = 4;      // input dimension
  int64_t d_y = 0;      // output dimension; 0 means d_x
  double eta = 0.1;     // step size of the gradient step the layer implements
  int64_t batch = 64;   // sequences
  uint64_t seed = 0;
};

// Weights of a linear self-attention layer acting on tokens of width D:
// e_j <- e_j + P · Σ_{i≤j} (W_V e_i)(W_K e_i)ᵀ(W_Q e_j) / scale.
struct LinearAttentionWeights {
  at::Tensor wq, wk, wv, proj;  // [D, D] each
  double scale = 1.0;           // the number of context examples N
};

// The weights under which the layer's update of the query token is one GD
// step of size eta on L(W) = 1/(2N) Σ ‖W x_i − y_i‖² from W = 0.
LinearAttentionWeights gd_step_weights(int64_t d_x, int64_t d_y, double eta, int64_t n);

// The causal linear self-attention layer (with its residual connection):
// e [B, T, D] -> [B, T, D]. Computed chunk by chunk (a running Σ v kᵀ across
// chunks), so long contexts cost O(B T (C + D²)) rather than O(B T²).
at::Tensor linear_self_attention(const at::Tensor& e, const LinearAttentionWeights& w);

// One sampled batch of the setting: states before and after the layer, and
// the inner objective ½ ‖y-slot(h) − y_q‖² at the query position.
struct LinearIclSetting {
  at::Tensor before;  // [B, N+1, d_x+d_y]: tokens (x_i, y_i), then the query (x_q, 0)
  at::Tensor after;   // the layer's output
  std::shared_ptr<SquaredLossObjective> objective;
};
LinearIclSetting make_linear_icl(const LinearIclOptions& opts);

// Analyses one setting: {"n", "alignment": {...}, "alignment_uniform":
// {...}, "step_size": {...}, "loss_before": x, "loss_after": y}.
nlohmann::json linear_icl_point(const LinearIclOptions& opts);

// The whole sweep, as written by `metalm synthetic-icl`:
// {"setting": "linear_icl", "d_x", "d_y", "eta", "batch", "seed", "points": [...]}.
nlohmann::json linear_icl_sweep(const std::vector<int64_t>& ns, LinearIclOptions opts);

}  // namespace metalm
