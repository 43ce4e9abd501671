#include "metalm/model/attention.hpp"

#include <ATen/ATen.h>

#include <cmath>

#include "linear.hpp"
#include "metalm/model/fused.hpp"
#include "metalm/model/positions.hpp"

namespace metalm {

CausalSelfAttentionImpl::CausalSelfAttentionImpl(const ModelConfig& cfg)
    : n_head_(cfg.n_head), head_dim_(cfg.head_dim()), kind_(cfg.attention), attn_dropout_(cfg.attn_dropout) {
  const int64_t d = cfg.d_model;
  c_attn = register_module("c_attn", torch::nn::Linear(torch::nn::LinearOptions(d, 3 * d).bias(cfg.bias)));
  c_proj = register_module("c_proj", torch::nn::Linear(torch::nn::LinearOptions(d, d).bias(cfg.bias)));
}

torch::Tensor CausalSelfAttentionImpl::forward(const torch::Tensor& x, const AttentionContext& ctx,
                                               LayerKVCache* cache, torch::Tensor* pattern) {
  const int64_t B = x.size(0), T = x.size(1), d = x.size(2);
  const int64_t P = ctx.offset;
  // [B, T, 3d] -> 3 x [B, T, H, hs] -> [B, H, T, hs]
  const auto qkv = apply_linear(c_attn, x).view({B, T, 3, n_head_, head_dim_}).unbind(2);
  torch::Tensor q = qkv[0].transpose(1, 2);
  torch::Tensor k = qkv[1].transpose(1, 2);
  torch::Tensor v = qkv[2].transpose(1, 2);
  if (ctx.rope_cos != nullptr) {
    q = apply_rope(q, *ctx.rope_cos, *ctx.rope_sin, P);
    k = apply_rope(k, *ctx.rope_cos, *ctx.rope_sin, P);
  }
  if (cache != nullptr) {
    // Write this step's keys/values into the preallocated buffers (no
    // reallocation as the sequence grows), then attend over the whole prefix.
    cache->k.narrow(2, P, T).copy_(k);
    cache->v.narrow(2, P, T).copy_(v);
    k = cache->k.narrow(2, 0, P + T);  // [B, H, P+T, hs]
    v = cache->v.narrow(2, 0, P + T);
  }
  const int64_t S = P + T;  // keys: the cached prefix and this step's positions
  const int64_t BH = B * n_head_;

  torch::Tensor att;  // [B*H, T, S]
  if (kind_ == AttentionKind::Softmax) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
    const torch::Tensor qr = q.reshape({BH, T, head_dim_}), kt = k.reshape({BH, S, head_dim_}).transpose(1, 2);
    if (fused_kernels_apply(q)) {
      // Raw scores, then scale, mask and softmax in one pass over the keys
      // each query attends to (model/fused.hpp).
      att = causal_softmax(at::bmm(qr, kt), scale, P);
    } else {
      // scale · q kᵀ + causal bias (0, or -inf above the diagonal) in one
      // GEMM: neither the scale nor the mask costs a pass of its own.
      const torch::Tensor bias = ctx.causal_bias->narrow(0, P, T).narrow(1, 0, S);  // [T, S]
      att = at::softmax(at::baddbmm(bias, qr, kt, /*beta=*/1.0, /*alpha=*/scale), -1);
    }
  } else {
    // 1 / (number of positions attended to) for queries at P .. P+T-1.
    const torch::Tensor mask = ctx.causal_mask->narrow(0, P, T).narrow(1, 0, S);  // [T, S]
    const torch::Tensor inv_count =
        at::arange(P + 1, P + T + 1, x.options()).reciprocal_().unsqueeze(1);  // [T, 1]
    att = at::bmm(q.reshape({BH, T, head_dim_}), k.reshape({BH, S, head_dim_}).transpose(1, 2))
              .masked_fill_(mask, 0.0)
              .mul_(inv_count);
  }
  if (pattern != nullptr) *pattern = att.view({B, n_head_, T, S});
  if (attn_dropout_ > 0.0 && is_training()) att = at::dropout(att, attn_dropout_, /*train=*/true);
  // [B*H, T, hs] -> [B, H, T, hs] -> [B, T, H, hs] -> [B, T, d]
  const torch::Tensor y =
      at::bmm(att, v.reshape({BH, S, head_dim_})).view({B, n_head_, T, head_dim_}).transpose(1, 2).reshape({B, T, d});
  return apply_linear(c_proj, y);
}

}  // namespace metalm
