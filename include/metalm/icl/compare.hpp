// A trained in-context regression model against the reference algorithms
// (`metalm icl-compare`), and metalm's inner-optimization analysis of its
// residual stream (docs/design.md 8.4, 8.5; the JSON in section 7).
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "metalm/icl/icl_config.hpp"
#include "metalm/icl/model.hpp"
#include "metalm/icl/reference.hpp"

namespace metalm::icl {

struct CompareOptions {
  int64_t tasks = 4096;       // test tasks (the Test stream)
  int64_t tune_tasks = 16384;  // tuning tasks (the Tune stream): tuned η within about 1 %
  // The context sizes of "loss_vs_n" (each 1 to 1,048,576); empty: default_context_sizes.
  std::vector<int64_t> context_sizes;
};

// The training N times 0.2, 0.5, 1, 2, 4 and 8, rounded, at least 1, without repeats.
std::vector<int64_t> default_context_sizes(int64_t n);

// ∂ŷ/∂x_q of the model for every task: [B, d_y, d_x] (autograd, d_y passes).
at::Tensor model_sensitivity(IclTransformerImpl& model, const TaskBatch& b);

// The comparison of one reference with the model on test tasks.
struct ReferenceComparison {
  double loss = 0;                   // prediction_loss of the reference
  double prediction_difference = 0;  // mean over tasks of ‖ŷ_TF − ŷ_alg‖² / d_y
  double prediction_cosine = 0;      // cos of the predictions, all tasks' outputs as one vector
  double sensitivity_cosine = 0;     // mean over tasks of cos(∂ŷ_TF/∂x_q, Ŵ_alg), flattened
};
ReferenceComparison compare_predictions(const at::Tensor& y_model, const at::Tensor& sensitivity_model,
                                        const Reference& r, const std::vector<double>& params, const TaskBatch& test);

// The inner-optimization analysis of the model on `test`, step by step
// (one step per layer): the analyser's alignment and step size against the
// query's loss ℓ(h) = ½ ‖−h_y − y_q‖², the pooled step size
// Σ⟨Δ, −g⟩ / Σ‖g‖², the share of the update in the y-slot, and the alignment
// of the layer's update map ∂Δ_y/∂x_q with the GD step read from the state,
// plain (−C) and preconditioned by `preconditioner` [d_x, d_x] (−C P):
// {"steps": [{"layer", "alignment": {summary}, "step_size": {summary},
//   "step_size_pooled", "readout_share", "loss_before", "loss_after",
//   "alignment_context_gradient": {mean, ci95, n}, "alignment_preconditioned": {...},
//   "preconditioned_minus_plain": {...}}]} (docs/design.md 8.5).
nlohmann::json analyse_model(IclTransformerImpl& model, const TaskBatch& test, const at::Tensor& preconditioner,
                             uint64_t seed);

// The whole comparison written by `metalm icl-compare` (docs/design.md 7).
nlohmann::json compare_with_references(IclTransformerImpl& model, const IclConfig& config, const CompareOptions& options);

}  // namespace metalm::icl
