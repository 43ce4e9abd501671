#include "metalm/model/block.hpp"

#include <ATen/ATen.h>

namespace metalm {

BlockImpl::BlockImpl(const ModelConfig& cfg)
    : post_ln_(cfg.norm_position == NormPosition::Post), resid_dropout_(cfg.resid_dropout) {
  ln_1 = register_module("ln_1", Norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias));
  attn = register_module("attn", CausalSelfAttention(cfg));
  if (cfg.mlp != MlpKind::None) {
    ln_2 = register_module("ln_2", Norm(cfg.norm, cfg.d_model, cfg.norm_eps, cfg.bias));
    mlp = register_module("mlp", Mlp(cfg));
  }
}

torch::Tensor BlockImpl::resid_dropout(const torch::Tensor& x) {
  if (resid_dropout_ > 0.0 && is_training()) return at::dropout(x, resid_dropout_, /*train=*/true);
  return x;
}

torch::Tensor BlockImpl::forward_attn(const torch::Tensor& x, const AttentionContext& ctx, LayerKVCache* cache,
                                      torch::Tensor* pattern, torch::Tensor* attn_out) {
  if (post_ln_) return ln_1(x + resid_dropout(attn(x, ctx, cache, pattern)));
  torch::Tensor out = resid_dropout(attn(ln_1(x), ctx, cache, pattern));
  if (attn_out != nullptr) *attn_out = out;
  return x + out;
}

torch::Tensor BlockImpl::forward_mlp(const torch::Tensor& mid, torch::Tensor* mlp_out) {
  if (!mlp) return mid;
  if (post_ln_) return ln_2(mid + resid_dropout(mlp(mid)));
  torch::Tensor out = resid_dropout(mlp(ln_2(mid)));
  if (mlp_out != nullptr) *mlp_out = out;
  return mid + out;
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const AttentionContext& ctx, const TraceWriter* writer,
                                 int64_t layer, LayerKVCache* cache) {
  torch::Tensor pattern;
  torch::Tensor* pattern_out = (writer != nullptr && writer->wants(Site::AttnPattern)) ? &pattern : nullptr;
  torch::Tensor attn_out, mlp_out;
  const torch::Tensor mid = forward_attn(x, ctx, cache, pattern_out, &attn_out);
  const torch::Tensor post = forward_mlp(mid, &mlp_out);

  if (writer != nullptr) {
    writer->put(Site::ResidPre, layer, x);
    if (writer->wants(Site::AttnOut)) writer->put(Site::AttnOut, layer, post_ln_ ? mid - x : attn_out);
    writer->put(Site::ResidMid, layer, mid);
    if (writer->wants(Site::MlpOut)) {
      if (!mlp) mlp_out = at::zeros_like(mid);
      else if (post_ln_) mlp_out = post - mid;
      writer->put(Site::MlpOut, layer, mlp_out);
    }
    writer->put(Site::ResidPost, layer, post);
    if (pattern_out != nullptr) writer->put(Site::AttnPattern, layer, pattern);
  }
  return post;
}

}  // namespace metalm
