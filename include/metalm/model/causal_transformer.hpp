// A GPT-style causal language model whose every layer's token representations
// can be read out (see trace.hpp for the site names and invariants).
//
// Parameters (named_parameters, Hugging Face GPT-2 names so an importer is a
// rename; Linear weights in torch layout [out, in], i.e. transposed w.r.t.
// HF's Conv1D):
//   wte.weight                      [V, d]   token embedding
//   wpe.weight                      [ctx, d] learned positions only
//   blocks.{l}.ln_1.{weight,bias}   [d]      (bias: layernorm with bias only; none: absent)
//   blocks.{l}.attn.c_attn.{weight,bias}  [3d, d], [3d]  fused q, k, v
//   blocks.{l}.attn.c_proj.{weight,bias}  [d, d], [d]
//   blocks.{l}.ln_2.{weight,bias}   [d]      (absent when mlp = none)
//   blocks.{l}.mlp.c_fc.{weight,bias}     [d_mlp, d], [d_mlp]
//   blocks.{l}.mlp.c_proj.{weight,bias}   [d, d_mlp], [d]
//   ln_f.{weight,bias}              [d]      pre-LN only
//   lm_head.weight                  [V, d]   only when tie_embeddings = false
// Buffers (not parameters, not saved): pos_table (sinusoidal), rope_cos/rope_sin.
//
// Final norm: pre-LN applies ln_f to `final`; post-LN has no ln_f (every block
// already ends with a norm), so final_norm is the identity. Either way
// logits = unembed(final_norm(final)) exactly, and lens_logits(h) reads any
// state through the same two maps.
//
// Initialisation (GPT-2): weights ~ N(0, init_std), the residual output
// projections (attn.c_proj, mlp.c_proj) ~ N(0, init_std / sqrt(2 n_layer)) so
// the residual stream's variance stays flat with depth; biases 0, norm gains 1.
// Uses torch's global generator: seed it with torch::manual_seed first.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "metalm/config/config.hpp"
#include "metalm/model/attention.hpp"
#include "metalm/model/block.hpp"
#include "metalm/model/norm.hpp"
#include "metalm/model/trace.hpp"

namespace metalm {

class CausalTransformerImpl : public torch::nn::Module {
 public:
  // Resolves a copy of cfg (throws ConfigError on an invalid config).
  explicit CausalTransformerImpl(ModelConfig cfg);

  // tokens: int64 [B, T] with T <= context -> logits [B, T, V]. No capture,
  // no extra work.
  torch::Tensor forward(const torch::Tensor& tokens);
  // Same logits; also clears `trace` and fills it with the requested sites.
  torch::Tensor forward(const torch::Tensor& tokens, const CaptureRequest& request, Trace& trace);

  // The rest of the forward pass from state j of the inner trajectory of
  // `granularity` (docs/design.md 5.1): `state` [B, T, d] (positions 0 … T−1)
  // takes the place of s_j, then the remaining sublayers or blocks, the final
  // norm and the head run exactly as in forward(). Returns logits [B, T, V].
  // j = 0 runs every block from resid_pre[0], j = K only the readout. Runs in
  // the module's mode (eval: no dropout). Throws ShapeError for a state that
  // does not fit the model or j outside 0 … K.
  torch::Tensor forward_from(const torch::Tensor& state, int64_t j, Granularity granularity);

  // Readout with exactly the model's own parameters; h: [..., d].
  torch::Tensor final_norm(const torch::Tensor& h);   // [..., d]
  torch::Tensor unembed(const torch::Tensor& h);      // [..., V]
  torch::Tensor lens_logits(const torch::Tensor& h);  // unembed(final_norm(h))

  // Incremental decoding: `tokens` [B, T] continue the cached sequence
  // (positions cache.length ..); returns their logits [B, T, V] and advances
  // the cache. Throws ShapeError when the cache cannot hold them.
  KVCache make_kv_cache(int64_t batch, int64_t capacity);
  torch::Tensor forward_cached(const torch::Tensor& tokens, KVCache& cache);

  // Samples max_new_tokens continuations of prompt ([T] or [B, T] int64) and
  // returns prompt + continuation with the prompt's rank. temperature <= 0:
  // greedy; top_k <= 0: no top-k filter; `seed` seeds a private generator, so
  // the global RNG is untouched. Runs in eval mode without autograd (the mode
  // is restored). Decoding reuses keys and values through a KVCache; beyond
  // `context` tokens the window slides (recomputed without the cache).
  torch::Tensor generate(const torch::Tensor& prompt, int64_t max_new_tokens, double temperature = 1.0,
                         int64_t top_k = 0, uint64_t seed = 0);

  // Module::to, then the position tables are recomputed in the new dtype
  // (converting float tables to double would keep float precision).
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  const ModelConfig& config() const { return cfg_; }
  // Where the parameters live (every tensor the model makes goes there too).
  c10::Device device() const { return wte->weight.device(); }
  torch::Tensor embedding_table();    // wte.weight [V, d]
  torch::Tensor unembedding_table();  // [V, d]: wte.weight when tied, else lm_head.weight

  torch::nn::Embedding wte{nullptr};
  torch::nn::Embedding wpe{nullptr};  // learned positions only
  torch::nn::ModuleList blocks{nullptr};
  Norm ln_f{nullptr};                 // pre-LN only
  torch::nn::Linear lm_head{nullptr};  // untied only

 private:
  torch::Tensor run(const torch::Tensor& tokens, const TraceWriter* writer, KVCache* cache);
  // What every block's attention shares in one pass over states `x` [B, T, d].
  AttentionContext attention_context(const torch::Tensor& x, int64_t offset);
  void init_parameters();
  void rebuild_position_tables();
  const torch::Tensor& causal_mask(const torch::Device& device);
  const torch::Tensor& causal_bias(const torch::Device& device, c10::ScalarType dtype);

  ModelConfig cfg_;
  std::vector<Block> block_list_;  // typed handles to the modules in `blocks`
  torch::Tensor pos_table_;        // buffer [ctx, d] (sinusoidal)
  torch::Tensor rope_cos_, rope_sin_;  // buffers [ctx, hs] (rope)
  // bool [ctx, ctx], true above the diagonal. Not a registered buffer:
  // Module::to(dtype) would turn it into floats.
  torch::Tensor mask_;
  // The mask as an additive bias in the parameters' dtype, made on first use.
  torch::Tensor bias_;
};
TORCH_MODULE(CausalTransformer);

// The forward pass in `precision`: tokens int64 [B, T] (moved to the model's
// device) -> logits [B, T, V] on the model's device. bf16 (or auto where it
// resolves to bf16, device.hpp) runs it under autocast, so its matmuls and
// their backward run in bfloat16, and returns the logits as float32 so that
// every loss taken of them is reduced in fp32; fp32 returns them in the
// model's own dtype. Training, evaluation and the benchmarks run the model
// through this one function.
torch::Tensor forward_logits(CausalTransformer& model, const torch::Tensor& tokens, Precision precision);
// The same, capturing the sites `request` names into `trace` (as
// CausalTransformerImpl::forward with a request does).
torch::Tensor forward_logits(CausalTransformer& model, const torch::Tensor& tokens, Precision precision,
                             const CaptureRequest& request, Trace& trace);

}  // namespace metalm
