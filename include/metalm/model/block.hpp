// One Transformer block: attention then MLP, each adding to the residual
// stream, with the norms before (pre-LN, GPT-2) or after (post-LN) each sum.
//
// Parameters: ln_1.*, attn.*, ln_2.*, mlp.* (ln_2 and mlp absent when
// mlp = none; ln_* absent when norm = none). See norm.hpp, attention.hpp, mlp.hpp.
//
// Sites, so that the invariants of docs/design.md section 4 hold in both placements:
//   pre-LN:  attn_out = drop(attn(ln_1(x)));       resid_mid  = x + attn_out
//            mlp_out  = drop(mlp(ln_2(resid_mid))); resid_post = resid_mid + mlp_out
//   post-LN: resid_mid  = ln_1(x + drop(attn(x)));          attn_out := resid_mid - x
//            resid_post = ln_2(resid_mid + drop(mlp(resid_mid))); mlp_out := resid_post - resid_mid
//   i.e. in post-LN attn_out/mlp_out are the total change of the stream made by
//   each sublayer together with its norm (they are only computed when captured).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include "metalm/config/config.hpp"
#include "metalm/model/attention.hpp"
#include "metalm/model/mlp.hpp"
#include "metalm/model/norm.hpp"
#include "metalm/model/trace.hpp"

namespace metalm {

class BlockImpl : public torch::nn::Module {
 public:
  explicit BlockImpl(const ModelConfig& cfg);

  // x = resid_pre [B, T, d] -> resid_post [B, T, d]. `writer` (may be null)
  // records this block's sites under index `layer`.
  torch::Tensor forward(const torch::Tensor& x, const AttentionContext& ctx, const TraceWriter* writer = nullptr,
                        int64_t layer = 0, LayerKVCache* cache = nullptr);

  // The two sublayers forward() composes, for running the block from
  // resid_mid (CausalTransformer::forward_from). forward_attn: resid_pre ->
  // resid_mid; `attn_out` (may be null) receives pre-LN's additive output,
  // `pattern` the attention weights. forward_mlp: resid_mid -> resid_post
  // (the identity when mlp = none); `mlp_out` receives pre-LN's additive output.
  torch::Tensor forward_attn(const torch::Tensor& x, const AttentionContext& ctx, LayerKVCache* cache = nullptr,
                             torch::Tensor* pattern = nullptr, torch::Tensor* attn_out = nullptr);
  torch::Tensor forward_mlp(const torch::Tensor& mid, torch::Tensor* mlp_out = nullptr);

  Norm ln_1{nullptr};
  CausalSelfAttention attn{nullptr};
  Norm ln_2{nullptr};  // null when mlp = none
  Mlp mlp{nullptr};    // null when mlp = none

 private:
  torch::Tensor resid_dropout(const torch::Tensor& x);

  bool post_ln_;
  double resid_dropout_;
};
TORCH_MODULE(Block);

}  // namespace metalm
