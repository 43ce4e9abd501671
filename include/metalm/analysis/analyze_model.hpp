// The library entry point of the inner-optimization analysis of a model:
// captures the residual stream on fixed batches, runs the analyser with the
// model's own logit lens and the random-target control, and aggregates the
// result into the JSON of docs/analysis-schema.md. Used by `metalm analyze`
// and by the trainer (one line of RUN_DIR/analysis.jsonl per analysis).
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metalm/analysis/lens.hpp"
#include "metalm/analysis/objective.hpp"
#include "metalm/analysis/trajectory.hpp"
#include "metalm/config/config.hpp"
#include "metalm/data/dataset_meta.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/model/causal_transformer.hpp"

namespace metalm {

// The analysis JSON names its format and version at the top level
// ("format": "metalm-analysis", "version": 2: the matched controls, intervals
// and null band of docs/design.md 5.5-5.6); readers refuse others.
inline constexpr const char* kAnalysisFormat = "metalm-analysis";
inline constexpr int kAnalysisVersion = 2;

// The settings of every function below are an AnalysisConfig (the
// "analysis" section of a run's config, usable on its own):
// granularity, chunk, freq_bins (with a DatasetMeta) and seed are read;
// every, batches and batch_size say which batches the trainer analyses and
// are ignored here, where the caller passes the batches; lens is read by
// make_lens (lens.hpp), whose Lens the functions below take (analysis.lens
// must name it: check_lens): they read no files.

// The CLM logit lens of `model` against next-token `targets` [B, T] int64
// (negative: no next token): the model's own final norm, statistics
// recomputed per state, and unembedding. Keeps a handle on the model.
LensObjective make_lens_objective(CausalTransformer& model, const at::Tensor& targets);

// The inner trajectory of one batch: the states, their names
// (blocks.0.resid_pre, [blocks.l.resid_mid,] blocks.l.resid_post, …, final)
// and the model's logits [B, T, V] from the same forward pass.
struct ModelTrajectory {
  std::vector<at::Tensor> states;
  std::vector<std::string> names;
  at::Tensor logits;
};
ModelTrajectory capture_trajectory(CausalTransformer& model, const at::Tensor& inputs, Granularity granularity);

// The site names of the states of an n_layer model's trajectory, in order.
std::vector<std::string> trajectory_names(int64_t n_layer, Granularity granularity);

// Analyses `batches` (in eval mode; the model's mode is restored) and returns
// the analysis JSON, every state read through `lens` (docs/design.md 5.2;
// the JSON's "lens" is lens.name()). `meta` (nullable) supplies the
// training-corpus token counts for the frequency aggregates and correlations.
nlohmann::json analyze_model(CausalTransformer& model, const std::vector<Batch>& batches,
                             const AnalysisConfig& analysis, const DatasetMeta* meta,
                             const Lens& lens = *logit_lens());

// One batch's share of analyze_model, before aggregation.
struct BatchAnalysis {
  Trajectory trajectory;  // with current_token and target_token
  double nll_sum = 0.0;   // the model's own loss, summed over the analysed positions
};

// Analyses batch `index` of a list (its random-target control is seeded by
// analysis.seed + index, so a batch gets the same control wherever it runs).
// The model must be in the mode it is analysed in (analyze_model: eval).
// Every state is read through `lens`.
BatchAnalysis analyze_batch(CausalTransformer& model, const Batch& batch, size_t index, const AnalysisConfig& analysis,
                            const Lens& lens = *logit_lens());

// Aggregates the analyses of `batches` (parts[b] of batches[b], read through
// the lens named `lens`) into the analysis JSON.
nlohmann::json summarize_analysis(CausalTransformer& model, const std::vector<Batch>& batches,
                                  const std::vector<BatchAnalysis>& parts, const AnalysisConfig& analysis,
                                  const DatasetMeta* meta, const std::string& lens = "logit");

// The exchange format of a BatchAnalysis between processes: one float64
// tensor, the model's loss sum then, for every analysed position, the
// position indices (rows, positions, current and target tokens: exact in
// float64), then state by state and step by step every statistic of
// kStateStatistics / kStepStatistics that the record holds. Its size
// follows from the model config, the batch and the granularity, so every
// rank knows where every batch's values go before any rank has analysed it.
int64_t packed_numel(const ModelConfig& config, const Batch& batch, const AnalysisConfig& analysis);
at::Tensor pack(const BatchAnalysis& part);
BatchAnalysis unpack(const at::Tensor& flat, const ModelConfig& config, const Batch& batch,
                     const AnalysisConfig& analysis);

// Adds a float64 tensor over the ranks of a data-parallel run, in place
// (an allreduce).
using SumOverRanks = std::function<void(at::Tensor&)>;

// analyze_model shared by the `world` ranks of a data-parallel run: every
// rank passes the same batches, analyses those with b % world == rank, and
// the packed results are summed over ranks (each value comes from exactly
// one rank, the others add zeros, so the sum is exact). Every rank returns
// the JSON that analyze_model returns for all batches in one process.
nlohmann::json analyze_model_sharded(CausalTransformer& model, const std::vector<Batch>& batches,
                                     const AnalysisConfig& analysis, const DatasetMeta* meta, int rank, int world,
                                     const SumOverRanks& sum, const Lens& lens = *logit_lens());

// The untrained control: the same analysis on a freshly initialised model of
// the same config (torch's global generator seeded with `init_seed` first),
// through the logit lens (a tuned lens fitted to the trained model means
// nothing for it; docs/design.md 5.5).
nlohmann::json analyze_untrained(const ModelConfig& config, uint64_t init_seed, const std::vector<Batch>& batches,
                                 const AnalysisConfig& analysis, const DatasetMeta* meta);

}  // namespace metalm
