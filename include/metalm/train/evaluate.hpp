// Next-token cross-entropy of a model on batches or on a token sequence.
//
// Window policy for sequences longer than the context (evaluate_tokens):
// with C = model context and stride S (default C), window k feeds the
// inputs x[kS .. kS+C-1] and scores only the targets not scored by an
// earlier window. With S = C the windows do not overlap: every target is
// scored once, and the first target of each window (x[kC+1]) is predicted
// from x[kC] alone, without earlier context. A smaller S gives every scored
// target at least C - S tokens of context (the "sliding window" perplexity)
// at C / S times the cost. Either way every position that has a next token
// is scored exactly once: tokens = n - 1.
#pragma once

#include <cstdint>
#include <vector>

#include "metalm/data/token_dataset.hpp"
#include "metalm/model/causal_transformer.hpp"

namespace metalm {

struct EvalResult {
  double loss = 0;     // mean next-token cross-entropy, nats
  int64_t tokens = 0;  // scored positions
  double perplexity() const;  // e^loss
  // Bits per text byte, from the split's bytes per token (DatasetMeta):
  // loss / ln 2 / bytes_per_token.
  double bits_per_byte(double bytes_per_token) const;
};

// Mean CE over every position of every batch (inputs/targets [B, T], moved
// to the model's device). Runs in eval mode without autograd; the module's
// mode is restored. bf16 runs the forward pass under autocast; the loss is
// reduced in fp32 either way.
EvalResult evaluate_batches(CausalTransformer& model, const std::vector<Batch>& batches,
                            Precision precision = Precision::Fp32);

// Mean CE of ids[1..n-1] given their prefixes, by the window policy above.
// ids: n >= 2 token ids in [0, vocab). stride: 1..context, 0 means context.
// `batch` windows are run together. Throws ShapeError on a bad stride or
// fewer than two ids.
EvalResult evaluate_tokens(CausalTransformer& model, const std::vector<int64_t>& ids, int64_t stride = 0,
                           int64_t batch = 16, Precision precision = Precision::Fp32);

}  // namespace metalm
