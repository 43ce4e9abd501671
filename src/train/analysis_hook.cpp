// The trainer's default analysis: the inner-optimization analysis of
// analysis/ (analyze_model_sharded, split over the ranks) on the run's fixed validation windows, with the
// training-corpus token counts of the dataset's meta.json.
#include "metalm/analysis/analyze_model.hpp"
#include "metalm/train/trainer.hpp"

namespace metalm {

AnalysisFn default_analysis() {
  return [](CausalTransformer& model, const std::vector<Batch>& batches, const RunConfig& config,
            const DatasetMeta& meta, DistributedContext& dist, const Lens& lens) {
    return analyze_model_sharded(model, batches, config.analysis, &meta, dist.rank(), dist.world_size(),
                                 [&dist](at::Tensor& t) { dist.allreduce_sum(t); }, lens);
  };
}

}  // namespace metalm
