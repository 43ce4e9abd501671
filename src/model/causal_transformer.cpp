#include "metalm/model/causal_transformer.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "metalm/core/error.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/eval_scope.hpp"
#include "metalm/model/positions.hpp"

namespace metalm {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

ModelConfig resolved(ModelConfig cfg) {
  resolve(cfg);
  return cfg;
}

}  // namespace

CausalTransformerImpl::CausalTransformerImpl(ModelConfig cfg) : cfg_(resolved(std::move(cfg))) {
  wte = register_module("wte", torch::nn::Embedding(cfg_.vocab_size, cfg_.d_model));
  if (cfg_.position == PositionKind::Learned)
    wpe = register_module("wpe", torch::nn::Embedding(cfg_.context, cfg_.d_model));
  if (cfg_.position == PositionKind::Sinusoidal)
    pos_table_ = register_buffer("pos_table", sinusoidal_table(cfg_.context, cfg_.d_model));
  if (cfg_.position == PositionKind::Rope) {
    RopeTables rope = rope_tables(cfg_.context, cfg_.head_dim(), cfg_.rope_base);
    rope_cos_ = register_buffer("rope_cos", rope.cos);
    rope_sin_ = register_buffer("rope_sin", rope.sin);
  }
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t l = 0; l < cfg_.n_layer; ++l) {
    block_list_.emplace_back(cfg_);
    blocks->push_back(block_list_.back());
  }
  if (cfg_.norm_position == NormPosition::Pre && cfg_.norm != NormKind::None)
    ln_f = register_module("ln_f", Norm(cfg_.norm, cfg_.d_model, cfg_.norm_eps, cfg_.bias));
  if (!cfg_.tie_embeddings)
    lm_head = register_module("lm_head",
                              torch::nn::Linear(torch::nn::LinearOptions(cfg_.d_model, cfg_.vocab_size).bias(false)));
  mask_ = at::ones({cfg_.context, cfg_.context}, at::kBool).triu(1);
  init_parameters();
}

void CausalTransformerImpl::init_parameters() {
  torch::NoGradGuard no_grad;
  const double proj_std = cfg_.init_std / std::sqrt(2.0 * static_cast<double>(cfg_.n_layer));
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    torch::Tensor& t = p.value();
    if (ends_with(name, ".bias"))
      t.zero_();
    else if (name.rfind("ln_", 0) == 0 || name.find(".ln_") != std::string::npos)
      t.fill_(1.0);
    else if (ends_with(name, "c_proj.weight"))
      t.normal_(0.0, proj_std);
    else
      t.normal_(0.0, cfg_.init_std);
  }
}

void CausalTransformerImpl::rebuild_position_tables() {
  // set_data keeps the registered buffers and our handles the same tensors.
  if (pos_table_.defined())
    pos_table_.set_data(sinusoidal_table(cfg_.context, cfg_.d_model, pos_table_.scalar_type()).to(pos_table_.device()));
  if (rope_cos_.defined()) {
    const RopeTables t = rope_tables(cfg_.context, cfg_.head_dim(), cfg_.rope_base, rope_cos_.scalar_type());
    rope_cos_.set_data(t.cos.to(rope_cos_.device()));
    rope_sin_.set_data(t.sin.to(rope_sin_.device()));
  }
}

void CausalTransformerImpl::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  Module::to(device, dtype, non_blocking);
  rebuild_position_tables();
}

void CausalTransformerImpl::to(torch::Dtype dtype, bool non_blocking) {
  Module::to(dtype, non_blocking);
  rebuild_position_tables();
}

void CausalTransformerImpl::to(torch::Device device, bool non_blocking) {
  Module::to(device, non_blocking);
  rebuild_position_tables();
}

const torch::Tensor& CausalTransformerImpl::causal_mask(const torch::Device& device) {
  if (mask_.device() != device) mask_ = mask_.to(device);
  return mask_;
}

const torch::Tensor& CausalTransformerImpl::causal_bias(const torch::Device& device, c10::ScalarType dtype) {
  if (!bias_.defined() || bias_.device() != device || bias_.scalar_type() != dtype)
    bias_ = at::zeros({cfg_.context, cfg_.context}, at::TensorOptions().device(device).dtype(dtype))
                .masked_fill_(causal_mask(device), -std::numeric_limits<double>::infinity());
  return bias_;
}

torch::Tensor CausalTransformerImpl::run(const torch::Tensor& tokens, const TraceWriter* writer, KVCache* cache) {
  if (tokens.dim() != 2)
    throw ShapeError("CausalTransformer: tokens must be [batch, seq], got " + std::to_string(tokens.dim()) + " dims");
  const int64_t B = tokens.size(0), T = tokens.size(1);
  const int64_t offset = cache != nullptr ? cache->length : 0;
  if (offset + T > cfg_.context)
    throw ShapeError("CausalTransformer: " + std::to_string(offset + T) + " positions exceed model.context = " +
                     std::to_string(cfg_.context));
  if (cache != nullptr && (offset + T > cache->capacity || cache->layers.size() != block_list_.size() ||
                           (cache->capacity > 0 && cache->layers[0].k.size(0) != B)))
    throw ShapeError("CausalTransformer: KV cache (capacity " + std::to_string(cache->capacity) +
                     ") cannot take " + std::to_string(T) + " more positions of batch " + std::to_string(B));
  if (writer != nullptr) writer->trace().clear(cfg_.n_layer);

  torch::Tensor x = wte(tokens);  // [B, T, d]
  if (writer != nullptr) writer->put(Site::Embed, -1, x);
  torch::Tensor pos;  // [T, d], broadcast over the batch
  if (cfg_.position == PositionKind::Learned)
    pos = wpe(at::arange(offset, offset + T, tokens.options().dtype(at::kLong)));
  else if (cfg_.position == PositionKind::Sinusoidal)
    pos = pos_table_.narrow(0, offset, T);
  if (pos.defined()) {
    if (writer != nullptr) writer->put(Site::PosEmbed, -1, pos.unsqueeze(0).expand({B, T, cfg_.d_model}));
    x = x + pos;
  }
  if (cfg_.embd_dropout > 0.0 && is_training()) x = at::dropout(x, cfg_.embd_dropout, /*train=*/true);

  const AttentionContext ctx = attention_context(x, offset);
  for (int64_t l = 0; l < cfg_.n_layer; ++l)
    x = block_list_[l]->forward(x, ctx, writer, l, cache != nullptr ? &cache->layers[l] : nullptr);
  if (cache != nullptr) cache->length += T;

  if (writer != nullptr) writer->put(Site::Final, -1, x);
  return unembed(final_norm(x));  // [B, T, V]
}

AttentionContext CausalTransformerImpl::attention_context(const torch::Tensor& x, int64_t offset) {
  AttentionContext ctx;
  ctx.causal_mask = &causal_mask(x.device());
  ctx.causal_bias = &causal_bias(x.device(), x.scalar_type());
  if (cfg_.position == PositionKind::Rope) {
    ctx.rope_cos = &rope_cos_;
    ctx.rope_sin = &rope_sin_;
  }
  ctx.offset = offset;
  return ctx;
}

torch::Tensor CausalTransformerImpl::forward_from(const torch::Tensor& state, int64_t j, Granularity granularity) {
  const bool sublayer = granularity == Granularity::Sublayer;
  const int64_t K = sublayer ? 2 * cfg_.n_layer : cfg_.n_layer;
  if (state.dim() != 3 || state.size(2) != cfg_.d_model || state.size(1) > cfg_.context)
    throw ShapeError("CausalTransformer::forward_from: expected a state [B, T <= " + std::to_string(cfg_.context) +
                     ", " + std::to_string(cfg_.d_model) + "], got " + std::to_string(state.dim()) + " dims");
  if (j < 0 || j > K)
    throw ShapeError("CausalTransformer::forward_from: state " + std::to_string(j) + " is outside the trajectory's 0 … " +
                     std::to_string(K));
  const AttentionContext ctx = attention_context(state, 0);
  torch::Tensor x = state;
  // s_j is resid_pre of block `first`, or (an odd sublayer state) its resid_mid.
  int64_t first = sublayer ? j / 2 : j;
  if (sublayer && j % 2 == 1) x = block_list_[first++]->forward_mlp(x);
  for (int64_t l = first; l < cfg_.n_layer; ++l) x = block_list_[l]->forward(x, ctx);
  return unembed(final_norm(x));  // [B, T, V]
}

torch::Tensor CausalTransformerImpl::forward(const torch::Tensor& tokens) { return run(tokens, nullptr, nullptr); }

torch::Tensor CausalTransformerImpl::forward(const torch::Tensor& tokens, const CaptureRequest& request,
                                             Trace& trace) {
  const TraceWriter writer(request, trace);
  return run(tokens, &writer, nullptr);
}

torch::Tensor CausalTransformerImpl::final_norm(const torch::Tensor& h) { return ln_f ? ln_f(h) : h; }

torch::Tensor CausalTransformerImpl::unembed(const torch::Tensor& h) {
  return at::linear(h, unembedding_table());  // [..., d] -> [..., V]
}

torch::Tensor CausalTransformerImpl::lens_logits(const torch::Tensor& h) { return unembed(final_norm(h)); }

torch::Tensor CausalTransformerImpl::embedding_table() { return wte->weight; }

torch::Tensor CausalTransformerImpl::unembedding_table() { return lm_head ? lm_head->weight : wte->weight; }

KVCache CausalTransformerImpl::make_kv_cache(int64_t batch, int64_t capacity) {
  KVCache cache;
  cache.capacity = std::min(capacity, cfg_.context);
  const auto opts = wte->weight.options().requires_grad(false);
  for (int64_t l = 0; l < cfg_.n_layer; ++l)
    cache.layers.push_back({at::empty({batch, cfg_.n_head, cache.capacity, cfg_.head_dim()}, opts),
                            at::empty({batch, cfg_.n_head, cache.capacity, cfg_.head_dim()}, opts)});
  return cache;
}

torch::Tensor CausalTransformerImpl::forward_cached(const torch::Tensor& tokens, KVCache& cache) {
  return run(tokens, nullptr, &cache);
}

torch::Tensor CausalTransformerImpl::generate(const torch::Tensor& prompt, int64_t max_new_tokens,
                                              double temperature, int64_t top_k, uint64_t seed) {
  if (prompt.dim() != 1 && prompt.dim() != 2)
    throw ShapeError("generate: prompt must be [T] or [B, T], got " + std::to_string(prompt.dim()) + " dims");
  torch::Tensor seq = prompt.dim() == 1 ? prompt.unsqueeze(0) : prompt;  // [B, T]
  seq = seq.to(at::kLong);
  if (seq.size(1) < 1) throw ShapeError("generate: the prompt needs at least one token");
  if (max_new_tokens <= 0) return prompt.to(at::kLong);

  EvalScope eval_mode(*this);
  torch::NoGradGuard no_grad;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);

  const int64_t B = seq.size(0);
  KVCache cache;
  bool cached = seq.size(1) < cfg_.context;
  if (cached) cache = make_kv_cache(B, seq.size(1) + max_new_tokens);

  torch::Tensor next_input = seq;  // tokens not yet seen by the model
  for (int64_t step = 0; step < max_new_tokens; ++step) {
    if (cached && cache.length + next_input.size(1) > cache.capacity) cached = false;  // context is full
    torch::Tensor logits;  // [B, V] at the last position
    if (cached) {
      logits = forward_cached(next_input, cache).select(1, -1);
    } else {
      const int64_t len = seq.size(1);
      const torch::Tensor window = seq.narrow(1, std::max<int64_t>(0, len - cfg_.context), std::min(len, cfg_.context));
      logits = forward(window).select(1, -1);
    }
    torch::Tensor next;  // [B, 1]
    if (temperature <= 0.0) {
      next = logits.argmax(-1, /*keepdim=*/true);
    } else {
      logits = logits / temperature;
      if (top_k > 0 && top_k < logits.size(-1)) {
        const torch::Tensor kth = std::get<0>(logits.topk(top_k, -1)).narrow(-1, top_k - 1, 1);  // [B, 1]
        logits = logits.masked_fill(logits < kth, -std::numeric_limits<double>::infinity());
      }
      // Drawn on the CPU with the private generator, so a seed gives the same
      // text on every device.
      next = at::multinomial(at::softmax(logits.to(at::kCPU, at::kDouble), -1), 1, /*replacement=*/false, gen)
                 .to(seq.device());
    }
    seq = at::cat({seq, next}, 1);
    next_input = next;
  }
  return prompt.dim() == 1 ? seq.squeeze(0) : seq;
}

namespace {

// Runs forward() (which returns the logits) in `precision`: see forward_logits.
template <class Forward>
torch::Tensor logits_in_precision(CausalTransformer& model, Precision precision, Forward forward) {
  const Precision resolved = resolve_precision(precision, model->device(), model->config());
  torch::Tensor logits;
  {
    AutocastScope autocast(resolved, model->device());
    logits = forward();
  }
  return resolved == Precision::Bf16 ? logits.to(torch::kFloat) : logits;
}

}  // namespace

torch::Tensor forward_logits(CausalTransformer& model, const torch::Tensor& tokens, Precision precision) {
  return logits_in_precision(model, precision, [&] { return model->forward(tokens.to(model->device())); });
}

torch::Tensor forward_logits(CausalTransformer& model, const torch::Tensor& tokens, Precision precision,
                             const CaptureRequest& request, Trace& trace) {
  return logits_in_precision(model, precision,
                             [&] { return model->forward(tokens.to(model->device()), request, trace); });
}

}  // namespace metalm
