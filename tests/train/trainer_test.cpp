#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include <filesystem>
#include <fstream>

#include "metalm/analysis/analyze_model.hpp"
#include "metalm/config/json.hpp"
#include "metalm/model/device.hpp"
#include "metalm/core/error.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/retention.hpp"
#include "metalm/train/trainer.hpp"
#include "train_fixture.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

std::vector<nlohmann::json> read_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// The fields of metrics lines that must not depend on timing.
std::vector<nlohmann::json> deterministic(const std::vector<nlohmann::json>& lines) {
  std::vector<nlohmann::json> out;
  for (auto j : lines) {
    j.erase("tokens_per_s");
    j.erase("elapsed_s");
    out.push_back(j);
  }
  return out;
}

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override { test::write_dataset(tmp / "data"); }
  RunConfig config() const { return test::tiny_config(tmp / "data"); }
  test::TempDir tmp;
};

TEST_F(TrainerTest, LossDecreasesOnALearnableSequence) {
  auto cfg = config();
  Trainer trainer(cfg, test::trainer_options(tmp / "run"));
  const auto s = trainer.run();
  ASSERT_EQ(s.losses.size(), 40u);
  EXPECT_NEAR(s.losses.front(), std::log(16.0), 0.3);
  double tail = 0;
  for (std::size_t i = 35; i < 40; ++i) tail += s.losses[i] / 5;
  EXPECT_LT(tail, s.losses.front() - 1.0);
  EXPECT_LT(s.last_val_loss, s.losses.front() - 1.0);
}

TEST_F(TrainerTest, WritesMetricsConfigBestAndFinalCheckpoint) {
  auto cfg = config();
  Trainer(cfg, test::trainer_options(tmp / "run")).run();
  const auto lines = read_lines(tmp / "run/metrics.jsonl");
  int train = 0, eval = 0;
  for (const auto& j : lines) {
    if (j["event"] == "train") {
      ++train;
      for (const char* k : {"step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "elapsed_s"})
        EXPECT_TRUE(j.contains(k)) << k;
      EXPECT_EQ(j["tokens"].get<int64_t>(), j["step"].get<int64_t>() * 8 * 16);
    } else {
      ++eval;
      EXPECT_EQ(j["event"], "eval");
      EXPECT_NEAR(j["val_ppl"].get<double>(), std::exp(j["val_loss"].get<double>()), 1e-9);
      // 2 bytes per token in the fixture's meta.json.
      EXPECT_NEAR(j["val_bpb"].get<double>(), j["val_loss"].get<double>() / std::log(2.0) / 2.0, 1e-9);
    }
  }
  EXPECT_EQ(train, 40);
  EXPECT_EQ(eval, 3);  // steps 0, 20, 40
  EXPECT_EQ(run_config_from_json(read_json_file(tmp / "run/config.json")).train.steps, 40);
  const auto best = read_json_file(tmp / "run/best.json");
  EXPECT_TRUE(fs::is_directory(fs::path(tmp / "run") / best["checkpoint"].get<std::string>()));
  EXPECT_EQ(load_checkpoint(tmp / "run").state.step, 40);
  EXPECT_EQ(load_checkpoint(tmp / "run").state.tokenizer, "byte");
}

// 2N steps straight vs N, resume, N: identical losses, metrics and weights
// (one thread, dropout on so the generator state matters).
void expect_resume_matches_uninterrupted(RunConfig cfg, const test::TempDir& tmp) {
  cfg.model.resid_dropout = 0.1;
  cfg.model.attn_dropout = 0.1;
  cfg.train.grad_accum = 2;
  Trainer straight(cfg, test::trainer_options(tmp / "a"));
  const auto full = straight.run();

  const auto first = Trainer(cfg, test::trainer_options(tmp / "b", false, 20)).run();
  // A crash after the step-20 checkpoint: metrics of later steps were written.
  std::ofstream(tmp / "b/metrics.jsonl", std::ios::app) << R"({"event":"train","step":21,"loss":9})" << "\n";
  // ... and a checkpoint write was interrupted.
  fs::create_directories(fs::path(tmp / "b/checkpoints/step_00000025.tmp-99"));
  Trainer resumed(cfg, test::trainer_options(tmp / "b", true));
  EXPECT_EQ(resumed.step(), 20);
  const auto second = resumed.run();

  ASSERT_EQ(first.losses.size(), 20u);
  ASSERT_EQ(second.losses.size(), 20u);
  for (std::size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(full.losses[i], first.losses[i]) << i;
    EXPECT_EQ(full.losses[20 + i], second.losses[i]) << 20 + i;
  }
  EXPECT_EQ(deterministic(read_lines(tmp / "a/metrics.jsonl")), deterministic(read_lines(tmp / "b/metrics.jsonl")));
  auto pa = straight.model()->named_parameters(), pb = resumed.model()->named_parameters();
  for (const auto& p : pa) EXPECT_TRUE(at::equal(p.value(), pb[p.key()])) << p.key();
  EXPECT_FALSE(fs::exists(tmp / "b/checkpoints/step_00000025.tmp-99"));
}

TEST_F(TrainerTest, ResumedRunMatchesUninterruptedRun) { expect_resume_matches_uninterrupted(config(), tmp); }

// The same in bf16: autocast's casts are deterministic, and the fp32 master
// weights and moments restore exactly.
TEST_F(TrainerTest, ResumedBf16RunMatchesUninterruptedBf16Run) {
  auto cfg = config();
  cfg.train.precision = Precision::Bf16;
  expect_resume_matches_uninterrupted(cfg, tmp);
}

// A run with precision auto runs, and records in its config.json, the
// precision auto chose on this machine, never "auto" (fp32 where bf16 is
// not native; else what the probe measured faster).
TEST_F(TrainerTest, AutoPrecisionRecordsWhatItChose) {
  auto cfg = config();
  cfg.train.steps = 2;
  cfg.train.precision = Precision::Auto;
  Trainer trainer(cfg, test::trainer_options(tmp / "auto"));
  const Precision chosen = trainer.config().train.precision;
  EXPECT_NE(chosen, Precision::Auto);
  if (!native_bf16(resolve_device(cfg.train.device))) {
    EXPECT_EQ(chosen, Precision::Fp32);
  }
  trainer.run();
  EXPECT_EQ(read_json_file(tmp / "auto/config.json")["train"]["precision"], to_string(chosen));
}

// config.json records what the arithmetic ran on (the BLAS kernel, ATen's
// capability and who chose them) beside the config, and reads back as the
// same config.
TEST_F(TrainerTest, ConfigJsonRecordsTheRuntimeAndReadsBackAsTheConfig) {
  auto cfg = config();
  cfg.train.steps = 1;
  Trainer trainer(cfg, test::trainer_options(tmp / "runtime"));
  trainer.run();
  const nlohmann::json j = read_json_file(tmp / "runtime/config.json");
  ASSERT_TRUE(j.contains(kRuntimeRecordKey));
  const nlohmann::json& r = j[kRuntimeRecordKey];
  EXPECT_TRUE(r["blas"]["kernel"].is_string());
  const nlohmann::json& set_by = r["blas"]["kernel_set_by"];
  EXPECT_TRUE(set_by == "library" || set_by == "user" || set_by == "metalm") << r.dump();
  EXPECT_TRUE(r["aten_capability"].is_string());
  EXPECT_EQ(to_json(run_config_from_json(j, "config.json")), to_json(trainer.config()));
}

// bf16 matmuls train the model about as well (the losses differ from fp32's
// by rounding, so they are compared loosely) and keep fp32 weights.
TEST_F(TrainerTest, Bf16TrainsLikeFp32WithFp32Weights) {
  auto cfg = config();
  const auto fp32 = Trainer(cfg, test::trainer_options(tmp / "fp32")).run();
  cfg.train.precision = Precision::Bf16;
  Trainer bf16(cfg, test::trainer_options(tmp / "bf16"));
  const auto s = bf16.run();
  EXPECT_NE(s.losses, fp32.losses);
  EXPECT_NEAR(s.last_val_loss, fp32.last_val_loss, 0.05);
  for (const auto& p : bf16.model()->parameters()) EXPECT_EQ(p.scalar_type(), at::kFloat);
  EXPECT_EQ(load_checkpoint(tmp / "bf16").model->parameters()[0].scalar_type(), at::kFloat);
}

// The analyzer computes in the parameters' fp32 whatever precision the model
// trains in: in a bf16 run, the analysis line the trainer writes (its default
// hook, called between bf16 steps) equals analyze_model on the saved
// checkpoint, run as a separate fp32 program would, and equals it again when
// the caller has bf16 autocast switched on.
TEST_F(TrainerTest, AnalysisOfABf16RunIsTheFp32AnalysisOfItsCheckpoint) {
  auto cfg = config();
  cfg.train.precision = Precision::Bf16;
  cfg.analysis.every = cfg.train.steps;
  cfg.analysis.batches = 2;
  cfg.analysis.batch_size = 2;
  auto o = test::trainer_options(tmp / "run");
  std::vector<Batch> analysed;
  const AnalysisFn trainer_default = o.analysis;
  o.analysis = [&](CausalTransformer& model, const std::vector<Batch>& batches, const RunConfig& c,
                   const DatasetMeta& meta, DistributedContext& dist, const Lens& lens) {
    analysed = batches;
    return trainer_default(model, batches, c, meta, dist, lens);
  };
  Trainer(cfg, o).run();
  const auto lines = read_lines(tmp / "run/analysis.jsonl");
  ASSERT_EQ(lines.size(), 2u);  // steps 0 and 40
  ASSERT_EQ(analysed.size(), 2u);

  LoadedCheckpoint ckpt = load_checkpoint(tmp / "run");
  ASSERT_EQ(ckpt.state.step, cfg.train.steps);
  for (const auto& p : ckpt.model->parameters()) ASSERT_EQ(p.scalar_type(), at::kFloat);
  const DatasetMeta meta = read_dataset_meta(tmp / "data");
  nlohmann::json fp32 = analyze_model(ckpt.model, analysed, cfg.analysis, &meta);
  nlohmann::json under_bf16;
  {
    AutocastScope bf16(Precision::Bf16, c10::Device(c10::kCPU));
    under_bf16 = analyze_model(ckpt.model, analysed, cfg.analysis, &meta);
  }
  EXPECT_EQ(under_bf16, fp32);
  nlohmann::json logged = lines[1];
  logged.erase("step");
  EXPECT_EQ(logged, fp32);
  // Not vacuous: the statistics are there and finite.
  ASSERT_TRUE(fp32.contains("steps"));
  EXPECT_FALSE(fp32["steps"].empty());
}

TEST_F(TrainerTest, CudaOnALibtorchWithoutCudaIsAConfigError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this libtorch has CUDA";
  auto cfg = config();
  cfg.train.device = DeviceKind::Cuda;
  EXPECT_THROW(Trainer(cfg, test::trainer_options(tmp / "cuda")), ConfigError);
  EXPECT_FALSE(fs::exists(tmp / "cuda"));
}

TEST_F(TrainerTest, RefusesARunDirectoryWithCheckpointsUnlessResuming) {
  auto cfg = config();
  Trainer(cfg, test::trainer_options(tmp / "run", false, 20)).run();
  EXPECT_THROW(Trainer(cfg, test::trainer_options(tmp / "run")), ConfigError);
  EXPECT_THROW(Trainer(cfg, test::trainer_options(tmp / "empty", true)), ConfigError);
  cfg.model.d_model = 64;
  EXPECT_THROW(Trainer(cfg, test::trainer_options(tmp / "run", true)), ConfigError);  // another model
}

TEST_F(TrainerTest, DivergenceStopsWithNumericErrorAndKeepsTheLastGoodCheckpoint) {
  auto cfg = config();
  cfg.train.lr = 1e6;
  cfg.train.warmup_steps = 0;
  cfg.train.grad_clip = 0;
  cfg.train.save_steps = {0};
  cfg.train.ckpt_every = 1000;
  cfg.train.eval_every = 1000;
  try {
    Trainer(cfg, test::trainer_options(tmp / "run")).run();
    FAIL() << "no NumericError";
  } catch (const NumericError& e) {
    EXPECT_NE(std::string(e.what()).find("at step"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("step_00000000"), std::string::npos) << e.what();
  }
  const auto all = list_checkpoints(tmp / "run");
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(checkpoint_step(all[0]), 0);
}

TEST_F(TrainerTest, SaveStepsIncludingZeroAreKeptBesideTheNewest) {
  auto cfg = config();
  cfg.train.save_steps = {0, 3};
  cfg.train.ckpt_every = 5;
  cfg.train.eval_every = 0;  // evaluate only at the end: no best-loss checkpoints on the way
  cfg.train.keep_last = 2;
  Trainer(cfg, test::trainer_options(tmp / "run")).run();
  std::vector<int64_t> steps;
  for (const auto& d : list_checkpoints(tmp / "run")) steps.push_back(checkpoint_step(d));
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 3, 35, 40}));
}

TEST_F(TrainerTest, AnalysisLinesCarryTheStep) {
  auto cfg = config();
  cfg.analysis.every = 20;
  cfg.analysis.batches = 1;
  cfg.analysis.batch_size = 2;
  auto o = test::trainer_options(tmp / "run");
  int calls = 0;
  o.analysis = [&](CausalTransformer&, const std::vector<Batch>& batches, const RunConfig&, const DatasetMeta&,
                     DistributedContext&, const Lens&) {
    ++calls;
    EXPECT_EQ(batches.size(), 1u);
    EXPECT_EQ(batches[0].inputs.size(0), 2);
    return nlohmann::json{{"value", calls}};
  };
  Trainer(cfg, o).run();
  const auto lines = read_lines(tmp / "run/analysis.jsonl");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["step"], 0);
  EXPECT_EQ(lines[2]["step"], 40);
  EXPECT_EQ(lines[2]["value"], 3);
}

}  // namespace
}  // namespace metalm
