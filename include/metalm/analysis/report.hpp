// Aggregation of a Trajectory into the analysis JSON (docs/analysis-schema.md):
// per step and per state summaries, per-position curves (position 0 on its
// own too), token-frequency bins and norm-vs-frequency rank correlations.
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <string>

#include "metalm/analysis/inference.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/analysis/trajectory.hpp"

namespace metalm {

// "steps" (one object per inner step, in order) and "states" (one per state).
// `bins` (nullable): training-corpus frequency bins; used when the trajectory
// carries current/target token ids. `boot` (nullable): the bootstrap over the
// trajectory's sequences that gives every mean its 95 % interval
// (docs/design.md 5.6); without it the intervals are left out.
nlohmann::json steps_to_json(const Trajectory& tr, const FrequencyBins* bins, const ClusterBootstrap* boot = nullptr);
nlohmann::json states_to_json(const Trajectory& tr, const FrequencyBins* bins, const ClusterBootstrap* boot = nullptr);

// The bootstrap of an analysis: the trajectory's sequences (flat row div T)
// as clusters, analysis.bootstrap resamples drawn from analysis.seed.
ClusterBootstrap sequence_bootstrap(const Trajectory& tr, const AnalysisConfig& analysis);

// Norm statistics of the rows of a token table ([V, d], embedding or
// unembedding), and with `bins`, mean norm per frequency bin and the Spearman
// correlation of row norm with training-corpus count.
nlohmann::json table_to_json(const at::Tensor& table, const FrequencyBins* bins);

}  // namespace metalm
