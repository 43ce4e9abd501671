// Position encodings that have no parameters: the sinusoidal table of
// "Attention is all you need" and rotary embeddings (RoPE).
#pragma once

#include <torch/types.h>

#include <cstdint>

namespace metalm {

// [context, d]: row p = [sin(p w_0), cos(p w_0), sin(p w_1), cos(p w_1), ...]
// with w_i = 10000^(-2i/d) (interleaved, as in the original paper). d even.
torch::Tensor sinusoidal_table(int64_t context, int64_t d, torch::Dtype dtype = torch::kFloat);

// RoPE in the "rotate half" convention (GPT-NeoX, Llama in Hugging Face):
// dimension i of the first half is paired with dimension i + hs/2, rotated by
// the angle p * base^(-2i/hs). cos and sin are [context, hs] (each frequency
// repeated for both halves).
struct RopeTables {
  torch::Tensor cos;  // [context, hs]
  torch::Tensor sin;  // [context, hs]
};
RopeTables rope_tables(int64_t context, int64_t head_dim, double base, torch::Dtype dtype = torch::kFloat);

// x: [..., T, hs] at positions offset .. offset+T-1; returns the rotated x.
// Because the same rotation is applied to queries and keys, q_m . k_n depends
// only on m - n.
torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                         int64_t offset = 0);

}  // namespace metalm
