// Training a tuned lens (analysis/tuned_lens.hpp) for a frozen model: one
// affine translator per residual site, initialised to the identity, fitted
// so that each translated state, read through the model's own final norm and
// unembedding, predicts the model's own output distribution: the loss is
// Σ_k KL(p ‖ q_k), p = softmax(model logits), q_k = softmax(lens_logits(A_k s_k + b_k)),
// averaged over positions (docs/design.md 5.2).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "metalm/analysis/tuned_lens.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/model/causal_transformer.hpp"

namespace metalm {

struct LensTrainOptions {
  int64_t steps = 300;
  double lr = 1e-3;           // Adam
  int64_t batch_size = 8;     // windows per step
  int64_t seq_len = 0;        // 0: the model's context
  uint64_t seed = 0;          // training windows
  double heldout_fraction = 0.1;  // the end of the token file, never trained on
  int64_t heldout_batches = 4;
  int64_t log_every = 50;     // progress callback every N steps (and the last)
};

// Held-out KL(p ‖ q_k) in nats per position, for every state of the sublayer
// trajectory (TunedLens::sites then `final`), through the logit lens and the
// tuned lens.
struct LensReport {
  std::vector<std::string> sites;
  std::vector<double> kl_logit, kl_tuned;
  int64_t heldout_positions = 0;
};

// Mean KL(p ‖ q) per state of `batches` through `lens` (the logit lens when
// null), p the model's own output distribution.
std::vector<double> lens_kl(CausalTransformer& model, const TunedLens* lens, const std::vector<Batch>& batches);

// The windows lens training sees: random windows (seeded) from the first
// (1 − heldout_fraction) of the file, and held-out windows spread evenly over
// the rest. Throws FormatError when either part is shorter than a window.
struct LensData {
  std::vector<Batch> heldout;
  std::function<Batch(int64_t step)> train_batch;
};
LensData lens_data(const TokenDataset& data, const LensTrainOptions& options, int64_t seq_len);

// Trains the lens (the model is frozen and left as it was; its parameters
// get no gradient) and reports the held-out KL before and after.
// progress(step, mean training loss since the last call) is called every
// log_every steps.
TunedLens train_tuned_lens(CausalTransformer& model, const TokenDataset& data, const LensTrainOptions& options,
                           LensReport* report = nullptr,
                           const std::function<void(int64_t, double)>& progress = nullptr);

}  // namespace metalm
