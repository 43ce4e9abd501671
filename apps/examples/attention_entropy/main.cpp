// A statistic of one's own, computed by the Trainer during training and
// written to RUN_DIR/analysis.jsonl beside the library's analysis: the mean
// entropy of every block's attention distributions. An untrained model
// attends almost uniformly (entropy ln(t + 1) at position t); a trained one
// concentrates its attention.
//
//   attention_entropy DATA_DIR RUN_DIR [STEPS]
//
// DATA_DIR holds train.bin, val.bin and meta.json from `metalm prepare`.
#include <metalm/metalm.hpp>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Mean over batches, heads and query positions of −Σ_s p log p for each
// block's attention pattern [B, H, T, T].
std::vector<double> attention_entropy(metalm::CausalTransformer& model, const std::vector<metalm::Batch>& batches) {
  at::NoGradGuard no_grad;
  const metalm::EvalScope eval(*model);  // no dropout in the measured patterns; the mode restored on return
  metalm::CaptureRequest request;
  request.sites = {metalm::Site::AttnPattern};
  std::vector<double> sum(static_cast<size_t>(model->config().n_layer), 0.0);
  for (const metalm::Batch& batch : batches) {
    metalm::Trace trace;
    model->forward(batch.inputs, request, trace);
    for (int64_t l = 0; l < trace.n_layer(); ++l) {
      const at::Tensor p = trace.at(metalm::Site::AttnPattern, l).to(at::kDouble);  // [B, H, T, T]
      // 0 log 0 = 0 for the masked (future) positions.
      const at::Tensor plogp = at::where(p > 0, p * p.log(), at::zeros_like(p));
      sum[static_cast<size_t>(l)] += -plogp.sum(-1).mean().item<double>();
    }
  }
  for (double& s : sum) s /= static_cast<double>(batches.size());
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: attention_entropy DATA_DIR RUN_DIR [STEPS]\n");
    return 2;
  }
  try {
    // A small model trained briefly, analysed every 10 steps.
    metalm::RunConfig config;
    config.name = "attention_entropy";
    config.data.dir = argv[1];
    config.model.vocab_size = metalm::read_dataset_meta(argv[1]).vocab_size;
    config.model.context = 64;
    config.model.d_model = 64;
    config.model.n_layer = 2;
    config.model.n_head = 2;
    config.train.steps = argc == 4 ? std::stoll(argv[3]) : 20;
    config.train.batch_size = 8;
    config.train.lr = 3e-3;
    config.train.warmup_steps = 5;
    config.train.eval_every = 10;
    config.analysis.every = 10;
    config.analysis.batches = 2;
    config.analysis.batch_size = 4;

    metalm::TrainerOptions options;
    options.run_dir = argv[2];
    // The trainer calls this every analysis.every steps, on the same fixed
    // validation batches each time, and appends what it returns (plus
    // "step") as one line of analysis.jsonl. This one keeps the library's
    // analysis and adds a key of its own.
    const metalm::AnalysisFn library = metalm::default_analysis();
    options.analysis = [library](metalm::CausalTransformer& model, const std::vector<metalm::Batch>& batches,
                                 const metalm::RunConfig& run, const metalm::DatasetMeta& meta,
                                 metalm::DistributedContext& dist, const metalm::Lens& lens) {
      nlohmann::json result = library(model, batches, run, meta, dist, lens);
      result["attention_entropy"] = attention_entropy(model, batches);
      return result;
    };

    metalm::Trainer trainer(config, options);
    const metalm::TrainSummary summary = trainer.run();
    std::printf("trained to step %lld, val loss %.4f; analysis in %s/analysis.jsonl\n",
                static_cast<long long>(summary.end_step), summary.last_val_loss, argv[2]);
  } catch (const metalm::Error& e) {
    std::fprintf(stderr, "attention_entropy: error: %s\n", e.what());
    return 1;
  } catch (const std::logic_error& e) {  // std::stoll on a bad STEPS
    std::fprintf(stderr, "attention_entropy: error: STEPS must be an integer\n");
    return 2;
  }
  return 0;
}
