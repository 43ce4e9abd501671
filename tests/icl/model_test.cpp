// The attention models: constructions that take GD steps exactly, a 1-layer
// model trained here in seconds that matches tuned GD and whose analysis
// recovers the tuned step size, exact resume, and the config's strictness.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <sstream>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/icl/compare.hpp"
#include "metalm/icl/train.hpp"
#include "metalm/model/weights.hpp"
#include "support/error_of.hpp"
#include "support/temp_dir.hpp"

namespace metalm::icl {
namespace {

using test::contains;
using test::error_of;

ModelOptions small_model(int64_t layers) {
  ModelOptions o;
  o.d_x = 4;
  o.d_y = 2;
  o.layers = layers;
  return o;
}

TaskOptions small_task() {
  TaskOptions t;
  t.d_x = 4;
  t.d_y = 2;
  t.n = 12;
  t.kappa = 5;
  return t;
}

TEST(IclModel, ConstructedLayerTakesOnePreconditionedGdStep) {
  IclTransformer model(small_model(1));
  const at::Tensor p = at::diag(at::tensor({1.0, 0.5, 2.0, 0.25}, at::kDouble));
  set_gd_step(*model, 0, 0.7, p.to(at::kFloat));
  const TaskBatch b = sample_tasks(small_task(), 1, Stream::Test, 0, 32);
  torch::NoGradGuard no_grad;
  const at::Tensor expected = predict(*preconditioned_step("p", p), b, {0.7});
  EXPECT_TRUE(at::allclose(model->forward(tokens(b, at::kFloat)).to(at::kDouble), expected, 1e-4, 1e-4));
}

TEST(IclModel, StackOfConstructedLayersIsKStepsOfGd) {
  // The readout ŷ = −y-slot keeps the context's y-slots as residuals, so
  // layer k's GD step acts on the residual of the steps before it.
  IclTransformer model(small_model(3));
  const std::vector<double> etas{0.5, 0.3, 0.2};
  for (int64_t l = 0; l < 3; ++l) set_gd_step(*model, l, etas[l], torch::eye(4));
  const TaskBatch b = sample_tasks(small_task(), 2, Stream::Test, 0, 32);
  torch::NoGradGuard no_grad;
  const at::Tensor expected = predict(*gradient_descent(3), b, etas);
  EXPECT_TRUE(at::allclose(model->forward(tokens(b, at::kFloat)).to(at::kDouble), expected, 1e-4, 1e-4));
}

TEST(IclModel, EveryConstructionComputesItsReferenceExactly) {
  // In float64 the stack of ConstructedSteps is the reference itself: GD-K's
  // steps on the residuals, GD++'s corrections of every input, the fixed
  // preconditioners; ridge and least squares have none.
  const TaskOptions task = small_task();
  const TaskBatch b = sample_tasks(task, 6, Stream::Test, 0, 64);
  std::vector<std::string> constructed;
  for (const auto& r : standard_references(task, 3)) {
    std::vector<double> params;
    for (const std::string& name : r->param_names()) params.push_back(name.rfind("gamma", 0) == 0 ? 0.15 : 0.6);
    const std::vector<ConstructedStep> steps = r->construction(params, task.d_x);
    if (steps.empty()) continue;
    IclTransformer model(small_model(static_cast<int64_t>(steps.size())));
    model->to(torch::kDouble);
    for (size_t l = 0; l < steps.size(); ++l)
      set_gd_step(*model, static_cast<int64_t>(l), steps[l].eta, steps[l].preconditioner, steps[l].gamma);
    torch::NoGradGuard no_grad;
    const at::Tensor y = model->forward(tokens(b, at::kDouble));
    EXPECT_TRUE(at::allclose(y, predict(*r, b, params), 1e-6, 1e-6)) << r->name();
    constructed.push_back(r->name());
  }
  EXPECT_EQ(constructed, (std::vector<std::string>{"gd1", "gd3", "gdpp3", "precond_opt", "precond_inv_sigma"}));
}

TEST(IclModel, SensitivityOfALinearModelIsItsImpliedPredictor) {
  IclTransformer model(small_model(1));
  set_gd_step(*model, 0, 0.6, torch::eye(4));
  const TaskBatch b = sample_tasks(small_task(), 3, Stream::Test, 0, 16);
  EXPECT_TRUE(at::allclose(model_sensitivity(*model, b), gradient_descent(1)->predictor(b, {0.6}), 1e-4, 1e-4));
}

TEST(IclAnalysis, ConstructedPreconditionedStepAlignsWithThePreconditionedGradientOnly) {
  // A layer built to take η C P x_q has the update map −η C P exactly: its
  // preconditioned alignment is 1 and its plain one below 1 (κ = 5).
  IclTransformer model(small_model(1));
  const TaskOptions task = small_task();
  const at::Tensor p = optimal_preconditioner(task);
  set_gd_step(*model, 0, 0.9, p.to(at::kFloat));
  const nlohmann::json step = analyse_model(*model, sample_tasks(task, 4, Stream::Test, 0, 256), p, 1)["steps"][0];
  EXPECT_NEAR(step["alignment_preconditioned"]["mean"].get<double>(), 1.0, 1e-5);
  EXPECT_LT(step["alignment_context_gradient"]["mean"].get<double>(), 0.99);
  EXPECT_GT(step["preconditioned_minus_plain"]["ci95"][0].get<double>(), 0.0);
  EXPECT_NEAR(step["readout_share"].get<double>(), 1.0, 1e-6);  // the construction leaves x-slots alone
}

IclConfig tiny_config() {
  IclConfig c;
  c.task.task.d_x = 4;
  c.task.task.d_y = 1;
  c.task.task.n = 16;
  c.train.steps = 1500;
  c.train.batch_size = 256;
  c.train.lr = 0.01;
  c.train.min_lr = 1e-4;
  c.train.warmup_steps = 20;
  c.train.log_every = 500;
  c.train.eval_every = 1500;
  c.train.eval_tasks = 512;
  c.train.checkpoint_every = 1500;
  c.model.init_std = 0.1;
  return c;
}

TEST(IclTraining, TrainedLayerMatchesTunedGdAndItsAnalysisRecoversTheStepSize) {
  test::TempDir dir;
  const IclConfig config = tiny_config();
  train_icl(config, dir / "run", false);
  IclCheckpoint ckpt = load_icl_checkpoint(dir / "run");
  EXPECT_EQ(ckpt.step, config.train.steps);

  const TaskOptions& task = config.task.task;
  const Tuned gd = tune(gradient_descent(1), sample_tasks(task, 11, Stream::Tune, 0, 1 << 14));
  const TaskBatch test = sample_tasks(task, 11, Stream::Test, 0, 1 << 13);
  at::Tensor y_model;
  {
    torch::NoGradGuard no_grad;
    y_model = ckpt.model->forward(tokens(test, at::kFloat));
  }
  const ReferenceComparison c =
      compare_predictions(y_model, model_sensitivity(*ckpt.model, test), *gd.reference, gd.params, test);
  EXPECT_GE(c.prediction_cosine, 0.95);
  EXPECT_GE(c.sensitivity_cosine, 0.95);
  // The analyser's pooled step size ⟨Δ, −g⟩ / ‖g‖² is the trained layer's η.
  const nlohmann::json analysis = analyse_model(*ckpt.model, test, optimal_preconditioner(task), 5);
  const double eta = analysis["steps"][0]["step_size_pooled"].get<double>();
  EXPECT_NEAR(eta, gd.params[0], 0.05 * gd.params[0]);
  // Its update of the query is the GD step's map x_q -> −η C x_q.
  EXPECT_GE(analysis["steps"][0]["alignment_context_gradient"]["mean"].get<double>(), 0.95);
  RecordProperty("prediction_cosine", std::to_string(c.prediction_cosine));
  RecordProperty("sensitivity_cosine", std::to_string(c.sensitivity_cosine));
  RecordProperty("pooled_step_size", std::to_string(eta));
  RecordProperty("tuned_eta", std::to_string(gd.params[0]));
}

TEST(IclCompare, AConstructedGdPlusPlusStackIsItsOwnInterpolationAndLossCurve) {
  // A 2-layer model set to GD++'s construction under the parameters the
  // comparison tunes: its interpolation with that construction is itself, its
  // loss at every context size is GD++'s, and a reference of another depth
  // has no interpolation.
  IclConfig config = tiny_config();
  config.model.layers = 2;
  const CompareOptions options{256, 512, {4, 16, 64}};
  const TaskOptions& task = config.task.task;
  const uint64_t seed = static_cast<uint64_t>(config.train.seed);
  const Tuned gdpp = tune(gd_plus_plus(2), sample_tasks(task, seed, Stream::Tune, 0, options.tune_tasks));
  IclTransformer model(config.model_options());
  const std::vector<ConstructedStep> steps = gdpp.reference->construction(gdpp.params, task.d_x);
  for (size_t l = 0; l < steps.size(); ++l)
    set_gd_step(*model, static_cast<int64_t>(l), steps[l].eta, steps[l].preconditioner.to(at::kFloat), steps[l].gamma);

  const nlohmann::json c = compare_with_references(*model, config, options);
  const double model_loss = c["model"]["loss"].get<double>();
  for (const auto& r : c["references"]) {
    const std::string name = r["name"].get<std::string>();
    if (name == "gdpp2") {
      EXPECT_NEAR(r["loss"].get<double>(), model_loss, 1e-4 * model_loss);
      EXPECT_NEAR(r["interpolation_loss"].get<double>(), model_loss, 1e-4 * model_loss);
      EXPECT_NEAR(r["sensitivity_cosine"].get<double>(), 1.0, 1e-5);
    } else if (name == "gd1" || name == "precond_opt" || name == "ridge") {
      EXPECT_TRUE(r["interpolation_loss"].is_null()) << name;
    }
  }
  const nlohmann::json& curve = c["loss_vs_n"];
  EXPECT_EQ(curve["n"], nlohmann::json({4, 16, 64}));
  for (size_t k = 0; k < 3; ++k) {
    const double m = curve["model"][k].get<double>(), a = curve["references"]["gdpp2"][k].get<double>();
    EXPECT_NEAR(m, a, 1e-4 * a) << "N = " << curve["n"][k];
  }
  EXPECT_EQ(default_context_sizes(10), (std::vector<int64_t>{2, 5, 10, 20, 40, 80}));
  EXPECT_EQ(default_context_sizes(2), (std::vector<int64_t>{1, 2, 4, 8, 16}));
}

TEST(IclTraining, ResumedRunMatchesUninterruptedRun) {
  test::TempDir dir;
  IclConfig config = tiny_config();
  config.train.steps = 20;
  config.train.checkpoint_every = 10;
  config.train.log_every = 5;
  config.train.eval_every = 10;
  config.train.keep_last = 5;
  train_icl(config, dir / "whole", false);
  train_icl(config, dir / "parts", false);
  // Cut the second run back to its step-10 checkpoint, as a crash would.
  std::filesystem::remove_all(dir / "parts/checkpoints/step_00000020");
  train_icl(config, dir / "parts", true);
  const IclCheckpoint whole = load_icl_checkpoint(dir / "whole"), parts = load_icl_checkpoint(dir / "parts");
  ASSERT_EQ(parts.step, 20);
  for (size_t i = 0; i < whole.model->parameters().size(); ++i)
    EXPECT_TRUE(at::equal(whole.model->parameters()[i], parts.model->parameters()[i]));
  // The same log, but for the wall-clock times.
  auto losses = [](const std::string& path) {
    std::vector<nlohmann::json> out;
    std::istringstream lines(read_file(path));
    for (std::string line; std::getline(lines, line);) {
      nlohmann::json j = nlohmann::json::parse(line);
      j.erase("elapsed_s");
      out.push_back(j);
    }
    return out;
  };
  EXPECT_EQ(losses(dir / "whole/metrics.jsonl"), losses(dir / "parts/metrics.jsonl"));
}

TEST(IclTraining, RefusesToOverwriteARunAndToResumeNothing) {
  test::TempDir dir;
  IclConfig config = tiny_config();
  config.train.steps = 2;
  EXPECT_TRUE(contains(error_of<ConfigError>([&] { train_icl(config, dir / "run", true); }), "nothing to resume"));
  train_icl(config, dir / "run", false);
  EXPECT_TRUE(contains(error_of<ConfigError>([&] { train_icl(config, dir / "run", false); }), "--resume"));
  config.train.lr = 0.5;
  EXPECT_TRUE(contains(error_of<ConfigError>([&] { train_icl(config, dir / "run", true); }), "differs"));
}

TEST(IclConfig, ReadsItsOwnDumpBack) {
  const IclConfig c = tiny_config();
  EXPECT_EQ(to_json(icl_config_from_json(to_json(c))), to_json(c));
}

TEST(IclConfig, RefusesUnknownKeysWrongTypesAndImpossibleValues) {
  auto error = [](const char* text) {
    return error_of<ConfigError>([&] { icl_config_from_json(nlohmann::json::parse(text), "c.json"); });
  };
  EXPECT_TRUE(contains(error(R"({"task": {"dx": 3}})"), "unknown key \"task.dx\""));
  EXPECT_TRUE(contains(error(R"({"tsk": {}})"), "unknown section \"tsk\""));
  EXPECT_TRUE(contains(error(R"({"task": {"n": "ten"}})"), "task.n: expected int"));
  EXPECT_TRUE(contains(error(R"({"model": {"attention": "relu"}})"), "model.attention: expected one of linear | softmax"));
  EXPECT_TRUE(contains(error(R"({"task": {"kappa": 0.5}})"), "task.kappa"));
  EXPECT_TRUE(contains(error(R"({"train": {"lr": -1}})"), "train.lr"));
}

TEST(IclCheckpointLoading, NamesWhatIsMissing) {
  test::TempDir dir;
  EXPECT_TRUE(contains(error_of<IoError>([&] { load_icl_checkpoint(dir / "absent"); }), "checkpoint not found"));
  EXPECT_TRUE(contains(error_of<IoError>([&] { load_icl_checkpoint(dir.path()); }), "no checkpoint in"));
}

}  // namespace
}  // namespace metalm::icl
