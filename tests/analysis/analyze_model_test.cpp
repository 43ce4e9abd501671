#include <gtest/gtest.h>

#include <torch/optim/adam.h>
#include <torch/utils.h>

#include <cmath>

#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/core/error.hpp"
#include "../model/tiny_configs.hpp"

namespace metalm {
namespace {

ModelConfig tiny_config() { return testing::small_config(16, 32, 32, 2); }

// B windows of a repetitive sequence (period 8 over ids 0..7) at different
// phases: a model learns the next token in a few dozen steps.
Batch periodic_batch(int64_t B, int64_t T) {
  const at::Tensor idx = at::arange(T + 1, at::TensorOptions(at::kLong)).unsqueeze(0) +
                         at::arange(B, at::TensorOptions(at::kLong)).unsqueeze(1);  // [B, T+1]
  const at::Tensor seq = idx.remainder(8) * 2 % 15;  // a permuted cycle over 8 of the 16 ids
  return {seq.narrow(1, 0, T).contiguous(), seq.narrow(1, 1, T).contiguous()};
}

double model_mean_ce(CausalTransformer& model, const Batch& b) {
  torch::NoGradGuard no_grad;
  model->eval();
  const at::Tensor logits = model->forward(b.inputs).to(at::kDouble);  // [B, T, V]
  return at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), b.targets.reshape({-1})).item<double>();
}

void train_briefly(CausalTransformer& model, const Batch& b, int steps) {
  model->train();
  torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(1e-2));
  for (int i = 0; i < steps; ++i) {
    opt.zero_grad();
    const at::Tensor logits = model->forward(b.inputs);
    at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), b.targets.reshape({-1})).backward();
    opt.step();
  }
}

TEST(AnalyzeModel, FinalLossIsTheModelsOwnLossAndTheLastLensLoss) {
  torch::manual_seed(1);
  CausalTransformer model(tiny_config());
  const Batch b = periodic_batch(4, 16);
  const nlohmann::json j = analyze_model(model, {b}, AnalysisConfig{}, nullptr);
  const double own = model_mean_ce(model, b);
  EXPECT_NEAR(j["final_loss"].get<double>(), own, 1e-6);
  EXPECT_NEAR(j["states"].back()["loss"].get<double>(), j["final_loss"].get<double>(), 1e-5);
  EXPECT_EQ(j["states"].back()["site"], "final");
  EXPECT_NEAR(j["steps"].back()["loss_after"].get<double>(), own, 1e-5);
  EXPECT_EQ(j["tokens"], 4 * 16);
}

TEST(AnalyzeModel, JsonNamesItsFormatAndVersion) {
  torch::manual_seed(1);
  CausalTransformer model(tiny_config());
  const std::vector<Batch> b{periodic_batch(1, 8)};
  for (const nlohmann::json& j : {analyze_model(model, b, AnalysisConfig{}, nullptr),
                                  analyze_untrained(tiny_config(), 3, b, AnalysisConfig{}, nullptr)}) {
    EXPECT_EQ(j["format"], "metalm-analysis");
    EXPECT_EQ(j["version"], 2);
    EXPECT_EQ(j["format"], kAnalysisFormat);
    EXPECT_EQ(j["version"], kAnalysisVersion);
  }
}

TEST(AnalyzeModel, EveryMeanHasAnIntervalAroundItAndEveryStepItsGapsAndNullBand) {
  torch::manual_seed(2);
  CausalTransformer model(tiny_config());
  const Batch b = periodic_batch(6, 16);
  train_briefly(model, b, 20);
  AnalysisConfig o;
  o.bootstrap = 200;
  o.permutations = 30;
  const nlohmann::json j = analyze_model(model, {b, periodic_batch(4, 16)}, o, nullptr);
  EXPECT_EQ(j["bootstrap"]["resamples"], 200);
  EXPECT_EQ(j["bootstrap"]["clusters"], 10);  // every sequence of both batches
  EXPECT_EQ(j["permutations"], 30);
  auto inside = [](const nlohmann::json& mean, const nlohmann::json& ci, const std::string& what) {
    ASSERT_TRUE(ci.is_array()) << what;
    EXPECT_LE(ci[0].get<double>(), mean.get<double>() + 1e-12) << what;
    EXPECT_GE(ci[1].get<double>(), mean.get<double>() - 1e-12) << what;
  };
  for (const auto& step : j["steps"]) {
    for (const char* key : {"alignment", "alignment_shuffled", "alignment_belief", "step_size_scaled"})
      inside(step[key]["mean"], step[key]["ci"], key);
    inside(step["loss_before"], step["loss_before_ci"], "loss_before");
    inside(step["norm_sq_growth"], step["norm_sq_growth_ci"], "norm_sq_growth");
    for (const char* c : {"uniform", "shuffled", "bigram", "belief", "permuted"}) {
      const nlohmann::json& gap = step["gaps"][c];
      inside(gap["mean"], gap["ci"], c);
      EXPECT_NEAR(gap["mean"].get<double>(),
                  step["alignment"]["mean"].get<double>() - step[std::string("alignment_") + c]["mean"].get<double>(),
                  1e-12)
          << c;
    }
    const std::string strongest = step["strongest_control"];
    EXPECT_NE(strongest, "belief");  // an explanation, not a null (docs/design.md 5.5)
    for (const char* c : {"shuffled", "bigram"})
      EXPECT_LE(step["gaps"][strongest]["mean"].get<double>(), step["gaps"][c]["mean"].get<double>());
    EXPECT_LT(step["null_band"][0].get<double>(), step["null_band"][1].get<double>());
  }
  inside(j["states"][0]["loss"], j["states"][0]["loss_ci"], "state loss");
}

TEST(AnalyzeModel, RandomTargetControlDiffersFromTrueTargetOnATrainedModel) {
  torch::manual_seed(2);
  CausalTransformer model(tiny_config());
  const Batch b = periodic_batch(8, 16);
  train_briefly(model, b, 40);
  ASSERT_LT(model_mean_ce(model, b), 0.5);  // it did learn the cycle
  const nlohmann::json j = analyze_model(model, {b}, AnalysisConfig{}, nullptr);
  double gap = 0.0;
  for (const auto& step : j["steps"]) {
    ASSERT_TRUE(step["alignment"]["mean"].is_number());
    ASSERT_TRUE(step["alignment_uniform"]["mean"].is_number());
    gap = std::max(gap, std::abs(step["alignment"]["mean"].get<double>() -
                                 step["alignment_uniform"]["mean"].get<double>()));
  }
  EXPECT_GT(gap, 0.05);
  // A trained model lowers the inner loss along the trajectory.
  EXPECT_LT(j["states"].back()["loss"].get<double>(), j["states"].front()["loss"].get<double>());
}

TEST(AnalyzeModel, SublayerGranularitySeparatesAttentionAndMlpSteps) {
  torch::manual_seed(3);
  CausalTransformer model(tiny_config());
  AnalysisConfig o;
  o.granularity = Granularity::Sublayer;
  o.chunk = 7;  // several autograd chunks
  const nlohmann::json j = analyze_model(model, {periodic_batch(2, 16), periodic_batch(2, 16)}, o, nullptr);
  ASSERT_EQ(j["steps"].size(), 4u);
  EXPECT_EQ(j["granularity"], "sublayer");
  EXPECT_EQ(j["steps"][0]["kind"], "attn");
  EXPECT_EQ(j["steps"][1]["kind"], "mlp");
  EXPECT_EQ(j["steps"][3]["layer"], 1);
  EXPECT_EQ(j["steps"][0]["from"], "blocks.0.resid_pre");
  EXPECT_EQ(j["steps"][0]["to"], "blocks.0.resid_mid");
  EXPECT_EQ(j["steps"][3]["to"], "final");
  EXPECT_EQ(j["tokens"], 64);
  EXPECT_EQ(j["steps"][0]["by_position"]["alignment"].size(), 16u);
  EXPECT_EQ(j["steps"][0]["position_0"]["count"], 4);
  EXPECT_NEAR(j["chance_alignment_per_token"].get<double>(), 1.0 / std::sqrt(32.0), 1e-12);
  // Consecutive steps chain: each step's loss_after is the next one's loss_before.
  for (size_t k = 0; k + 1 < j["steps"].size(); ++k)
    EXPECT_DOUBLE_EQ(j["steps"][k]["loss_after"].get<double>(), j["steps"][k + 1]["loss_before"].get<double>());
}

TEST(AnalyzeModel, FrequencyAggregatesUseTheTrainingCounts) {
  torch::manual_seed(4);
  CausalTransformer model(tiny_config());
  DatasetMeta meta;
  meta.vocab_size = 16;
  for (int64_t i = 0; i < 16; ++i) meta.train_counts.push_back(i * i * 10);
  AnalysisConfig o;
  o.freq_bins = 4;
  const nlohmann::json j = analyze_model(model, {periodic_batch(2, 16)}, o, &meta);
  const auto& current = j["steps"][0]["by_frequency"]["current"];
  ASSERT_EQ(current.size(), 4u);
  int64_t positions = 0;
  for (const auto& bin : current) positions += bin["positions"].get<int64_t>();
  EXPECT_EQ(positions, 32);
  EXPECT_TRUE(j["states"][0]["norm_freq_spearman"].contains("target"));
  EXPECT_EQ(j["tables"]["embedding"]["rows"], 16);
  EXPECT_EQ(j["tables"]["embedding"]["by_frequency"].size(), 4u);
  // Embedding and its tied unembedding are the same table.
  EXPECT_EQ(j["tables"]["embedding"]["norm"], j["tables"]["unembedding"]["norm"]);
}

// Runs analyze_model_sharded as `world` ranks in one process: each rank's
// contribution is recorded at its sum, then rank 0 runs again with the total.
nlohmann::json run_as_ranks(CausalTransformer& model, const std::vector<Batch>& batches, const AnalysisConfig& o,
                            const DatasetMeta* meta, int world) {
  struct Collected {};
  at::Tensor total;
  for (int rank = 0; rank < world; ++rank) {
    try {
      analyze_model_sharded(model, batches, o, meta, rank, world, [&](at::Tensor& t) {
        total = total.defined() ? total + t : t.clone();
        throw Collected{};
      });
      ADD_FAILURE() << "rank " << rank << " never exchanged its results";
    } catch (const Collected&) {
    }
  }
  return analyze_model_sharded(model, batches, o, meta, 0, world, [&](at::Tensor& t) { t.copy_(total); });
}

TEST(AnalyzeModel, PackedBatchAnalysisRoundTripsExactly) {
  torch::manual_seed(5);
  CausalTransformer model(tiny_config());
  model->eval();
  Batch b = periodic_batch(3, 16);
  b.targets.index_put_({1, at::indexing::Slice(10, at::indexing::None)}, -1);  // positions without a next token
  AnalysisConfig o;
  o.granularity = Granularity::Sublayer;
  const BatchAnalysis part = analyze_batch(model, b, 0, o);
  const at::Tensor flat = pack(part);
  EXPECT_EQ(flat.numel(), packed_numel(model->config(), b, o));
  const BatchAnalysis back = unpack(flat, model->config(), b, o);
  EXPECT_TRUE(at::equal(back.trajectory.rows, part.trajectory.rows));
  EXPECT_TRUE(at::equal(back.trajectory.target_token, part.trajectory.target_token));
  EXPECT_FALSE(back.trajectory.states.back().norm_grad.defined());
  EXPECT_EQ(summarize_analysis(model, {b}, {back}, o, nullptr).dump(),
            summarize_analysis(model, {b}, {part}, o, nullptr).dump());
  EXPECT_THROW(unpack(flat.narrow(0, 0, flat.numel() - 1), model->config(), b, o), ShapeError);
}

TEST(AnalyzeModel, ShardedOverRanksEqualsOneProcess) {
  torch::manual_seed(6);
  CausalTransformer model(tiny_config());
  DatasetMeta meta;
  meta.vocab_size = 16;
  for (int64_t i = 0; i < 16; ++i) meta.train_counts.push_back(100 - i * 5);
  const std::vector<Batch> batches{periodic_batch(2, 16), periodic_batch(3, 16), periodic_batch(1, 16)};
  for (auto g : {Granularity::Block, Granularity::Sublayer}) {
    AnalysisConfig o;
    o.granularity = g;
    o.freq_bins = 4;
    const std::string one = analyze_model(model, batches, o, &meta).dump();
    EXPECT_EQ(run_as_ranks(model, batches, o, &meta, 2).dump(), one);
    EXPECT_EQ(run_as_ranks(model, batches, o, &meta, 4).dump(), one);  // rank 3 analyses nothing
  }
}

TEST(AnalyzeModel, RestoresTheModelsTrainingMode) {
  CausalTransformer model(tiny_config());
  model->train();
  analyze_model(model, {periodic_batch(1, 8)}, AnalysisConfig{}, nullptr);
  EXPECT_TRUE(model->is_training());
}

TEST(AnalyzeModel, UntrainedControlIsReproducible) {
  const std::vector<Batch> b{periodic_batch(2, 8)};
  const nlohmann::json a = analyze_untrained(tiny_config(), 9, b, AnalysisConfig{}, nullptr);
  const nlohmann::json c = analyze_untrained(tiny_config(), 9, b, AnalysisConfig{}, nullptr);
  EXPECT_EQ(a["steps"][0]["alignment"], c["steps"][0]["alignment"]);
}

}  // namespace
}  // namespace metalm
