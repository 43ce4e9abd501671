// Causal multi-head self-attention, softmax or linear.
//
// Parameters (GPT-2 names, torch Linear layout [out, in]):
//   c_attn.weight [3d, d] (rows: q, k, v), c_attn.bias [3d],
//   c_proj.weight [d, d], c_proj.bias [d]
//
// softmax: A = softmax(q k^T / sqrt(hs) + causal mask)
// linear:  A[t, s] = q_t . k_s / (t + 1) for s <= t, 0 otherwise: no softmax,
//          no 1/sqrt(hs), scaled by the number of positions attended to (the
//          setting in which one layer can equal one gradient step).
// Output: c_proj(concat_heads(A v)).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "metalm/config/config.hpp"

namespace metalm {

// Keys and values of earlier positions, for incremental decoding.
struct LayerKVCache {
  torch::Tensor k;  // [B, H, capacity, hs]
  torch::Tensor v;  // [B, H, capacity, hs]
};
// One LayerKVCache per block; made by CausalTransformer::make_kv_cache.
struct KVCache {
  std::vector<LayerKVCache> layers;
  int64_t length = 0;    // positions already cached
  int64_t capacity = 0;  // positions the buffers can hold
};

// What every layer's attention shares during one forward pass.
struct AttentionContext {
  const torch::Tensor* causal_mask = nullptr;  // bool [context, context], true above the diagonal
  const torch::Tensor* causal_bias = nullptr;  // [context, context], -inf above the diagonal, else 0
  const torch::Tensor* rope_cos = nullptr;     // [context, hs] when position = rope
  const torch::Tensor* rope_sin = nullptr;
  int64_t offset = 0;  // absolute position of the first query (cached length)
};

class CausalSelfAttentionImpl : public torch::nn::Module {
 public:
  explicit CausalSelfAttentionImpl(const ModelConfig& cfg);

  // x: [B, T, d] -> [B, T, d]. With a cache, keys/values of x are written at
  // positions ctx.offset.. and attention covers the cached prefix too. When
  // `pattern` is non-null it receives the attention weights [B, H, T, offset+T].
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& ctx, LayerKVCache* cache = nullptr,
                        torch::Tensor* pattern = nullptr);

  torch::nn::Linear c_attn{nullptr};
  torch::nn::Linear c_proj{nullptr};

 private:
  int64_t n_head_;
  int64_t head_dim_;
  AttentionKind kind_;
  double attn_dropout_;
};
TORCH_MODULE(CausalSelfAttention);

}  // namespace metalm
