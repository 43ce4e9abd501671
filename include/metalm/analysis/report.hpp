// Aggregation of a Trajectory into the analysis JSON (docs/analysis-schema.md):
// per step and per state summaries, per-position curves (position 0 on its
// own too), token-frequency bins and norm-vs-frequency rank correlations.
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <string>

#include "metalm/analysis/summary.hpp"
#include "metalm/analysis/trajectory.hpp"

namespace metalm {

// "steps" (one object per inner step, in order) and "states" (one per state).
// `bins` (nullable): training-corpus frequency bins; used when the trajectory
// carries current/target token ids.
nlohmann::json steps_to_json(const Trajectory& tr, const FrequencyBins* bins);
nlohmann::json states_to_json(const Trajectory& tr, const FrequencyBins* bins);

// Norm statistics of the rows of a token table ([V, d], embedding or
// unembedding), and with `bins`, mean norm per frequency bin and the Spearman
// correlation of row norm with training-corpus count.
nlohmann::json table_to_json(const at::Tensor& table, const FrequencyBins* bins);

}  // namespace metalm
