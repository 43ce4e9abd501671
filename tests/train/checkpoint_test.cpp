#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/optimizer.hpp"
#include "metalm/train/retention.hpp"
#include "metalm/train/rng_state.hpp"
#include "train_fixture.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

RunConfig small_config() { return test::tiny_config("unused"); }

TEST(RngState, RestoringRepeatsTheSameDraws) {
  torch::manual_seed(5);
  const auto state = capture_rng_state();
  const auto a = at::rand({4});
  restore_rng_state(state);
  EXPECT_TRUE(at::equal(a, at::rand({4})));
  EXPECT_THROW(restore_rng_state({{"torch_cpu", "zz"}}), FormatError);
}

TEST(Checkpoint, RoundTripsWeightsStateAndOptimizerMoments) {
  test::TempDir tmp;
  auto cfg = small_config();
  torch::manual_seed(1);
  CausalTransformer model(cfg.model);
  auto opt = make_optimizer(model, cfg.train);
  const auto x = at::randint(0, 16, {2, 8}, at::kLong);
  model->forward(x).sum().backward();
  opt->step();

  CheckpointState st;
  st.step = 12;
  st.tokenizer = "byte";
  st.best_val_loss = 1.5;
  st.rng = capture_rng_state();
  // What a sampler that drew grad_accum micro-batches per step saves
  // (load_checkpoint checks it against the step and the config).
  st.sampler = {{"kind", "random_window"},
                {"seed", static_cast<uint64_t>(cfg.train.seed)},
                {"step", 12 * cfg.train.grad_accum},
                {"batch", cfg.train.batch_size},
                {"seq_len", cfg.train.seq_len}};
  const auto dir = checkpoint_dir(tmp.path(), 12);
  save_checkpoint(dir, cfg, model, opt.get(), st);
  EXPECT_EQ(fs::path(dir).filename(), "step_00000012");

  auto loaded = load_checkpoint(tmp.path());  // the run directory: newest checkpoint
  EXPECT_EQ(loaded.path, dir);
  EXPECT_EQ(loaded.state.step, 12);
  EXPECT_EQ(loaded.state.tokenizer, "byte");
  EXPECT_EQ(loaded.state.best_val_loss, 1.5);
  EXPECT_EQ(loaded.state.sampler, st.sampler);
  EXPECT_TRUE(loaded.has_optimizer);
  EXPECT_EQ(to_json(loaded.config), to_json(cfg));
  const auto a = model->named_parameters(), b = loaded.model->named_parameters();
  for (const auto& p : a) EXPECT_TRUE(at::equal(p.value(), b[p.key()])) << p.key();

  // The same next update from the restored optimizer as from the original.
  auto opt2 = make_optimizer(loaded.model, cfg.train);
  load_optimizer_state(dir, *opt2);
  opt->zero_grad();
  opt2->zero_grad();
  model->forward(x).sum().backward();
  loaded.model->forward(x).sum().backward();
  opt->step();
  opt2->step();
  for (const auto& p : a) EXPECT_TRUE(at::equal(p.value(), b[p.key()])) << p.key();
}

TEST(Checkpoint, LoadingDoesNotDisturbTheGlobalGenerator) {
  test::TempDir tmp;
  auto cfg = small_config();
  CausalTransformer model(cfg.model);
  save_checkpoint(checkpoint_dir(tmp.path(), 0), cfg, model, nullptr, CheckpointState{});
  torch::manual_seed(9);
  const auto state = capture_rng_state();
  const auto loaded = load_checkpoint(checkpoint_dir(tmp.path(), 0));
  EXPECT_FALSE(loaded.has_optimizer);
  EXPECT_EQ(capture_rng_state(), state);
}

// A crash mid-write leaves step_X.tmp-PID, or a directory without state.json:
// neither is a checkpoint, and the previous complete one is used.
TEST(Checkpoint, HalfWrittenDirectoriesAreIgnored) {
  test::TempDir tmp;
  auto cfg = small_config();
  CausalTransformer model(cfg.model);
  CheckpointState st;
  st.step = 10;
  save_checkpoint(checkpoint_dir(tmp.path(), 10), cfg, model, nullptr, st);

  const fs::path root = fs::path(tmp.path()) / "checkpoints";
  fs::create_directories(root / "step_00000020.tmp-4242");
  std::ofstream(root / "step_00000020.tmp-4242" / "state.json") << "{";
  fs::create_directories(root / "step_00000030");
  fs::copy_file(root / "step_00000010" / "model.safetensors", root / "step_00000030" / "model.safetensors");

  EXPECT_EQ(list_checkpoints(tmp.path()), std::vector<std::string>{checkpoint_dir(tmp.path(), 10)});
  EXPECT_EQ(load_checkpoint(tmp.path()).state.step, 10);
  const auto removed = remove_incomplete_checkpoints(tmp.path());
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_FALSE(fs::exists(root / "step_00000030"));
  EXPECT_TRUE(fs::exists(root / "step_00000010"));
}

TEST(Checkpoint, AFileThatIsNoRegularFileIsNamedAsSuch) {
  test::TempDir tmp;
  auto cfg = small_config();
  CausalTransformer model(cfg.model);
  CheckpointState st;
  st.step = 10;
  const std::string dir = checkpoint_dir(tmp.path(), 10);
  save_checkpoint(dir, cfg, model, nullptr, st);
  const fs::path weights = fs::path(dir) / "model.safetensors";
  fs::remove(weights);
  ASSERT_EQ(::mkfifo(weights.c_str(), 0600), 0);
  try {
    load_checkpoint(dir);
    FAIL() << "a FIFO as model.safetensors was loaded";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("model.safetensors"), std::string::npos) << what;
    EXPECT_NE(what.find("not a regular file"), std::string::npos) << what;
  }
  fs::remove(weights);
  fs::create_symlink("/dev/zero", weights);
  EXPECT_THROW(load_checkpoint(dir), Error);
}

TEST(Checkpoint, OverwritingAStepReplacesItCompletely) {
  test::TempDir tmp;
  auto cfg = small_config();
  CausalTransformer model(cfg.model);
  CheckpointState st;
  st.step = 4;
  const auto dir = checkpoint_dir(tmp.path(), 4);
  save_checkpoint(dir, cfg, model, nullptr, st);
  st.tokenizer = "second";
  save_checkpoint(dir, cfg, model, nullptr, st);
  EXPECT_EQ(load_checkpoint(dir).state.tokenizer, "second");
  EXPECT_EQ(std::distance(fs::directory_iterator(fs::path(tmp.path()) / "checkpoints"), fs::directory_iterator{}), 1);
}

TEST(Checkpoint, MissingOrForeignDirectoriesGiveClearErrors) {
  test::TempDir tmp;
  EXPECT_THROW(load_checkpoint(tmp / "nope"), IoError);
  EXPECT_THROW(load_checkpoint(tmp.path()), IoError);
  fs::create_directories(tmp / "c");
  std::ofstream(tmp / "c/state.json") << R"({"format": "other"})";
  std::ofstream(tmp / "c/config.json") << "{}";
  std::ofstream(tmp / "c/model.safetensors") << "";
  EXPECT_THROW(load_checkpoint(tmp / "c"), FormatError);
}

TEST(Retention, KeepsTheNewestTheBestAndTheSaveSteps) {
  test::TempDir tmp;
  auto cfg = small_config();
  CausalTransformer model(cfg.model);
  for (int64_t s : {0, 5, 10, 15, 20, 25, 30}) {
    CheckpointState st;
    st.step = s;
    save_checkpoint(checkpoint_dir(tmp.path(), s), cfg, model, nullptr, st);
  }
  prune_checkpoints(tmp.path(), RetentionPolicy{2, {0, 5}, 15});
  std::vector<int64_t> steps;
  for (const auto& d : list_checkpoints(tmp.path())) steps.push_back(checkpoint_step(d));
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 5, 15, 25, 30}));
}

}  // namespace
}  // namespace metalm
