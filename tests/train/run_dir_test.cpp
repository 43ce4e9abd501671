// Run-directory safety: checkpoints are what their state.json says, resume
// skips a broken newest checkpoint, pruning never loses the newest good one,
// one process per run directory, and log appends are whole lines or nothing.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/jsonl_log.hpp"
#include "metalm/train/optimizer.hpp"
#include "metalm/train/retention.hpp"
#include "metalm/train/rng_state.hpp"
#include "metalm/train/run_lock.hpp"
#include "metalm/train/trainer.hpp"
#include "support/error_of.hpp"
#include "support/file_size_limit.hpp"
#include "train_fixture.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

using test::contains;
using test::FileSizeLimit;

// Checkpoints at the given steps, each with optimizer state and distinct
// weights (the step is added to every parameter).
class RunDir : public ::testing::Test {
 protected:
  void save(int64_t step) {
    auto cfg = test::tiny_config("unused");
    torch::manual_seed(3);
    CausalTransformer model(cfg.model);
    {
      at::NoGradGuard no_grad;
      for (auto& p : model->parameters()) p.add_(static_cast<double>(step));
    }
    auto opt = make_optimizer(model, cfg.train);
    model->forward(at::randint(0, 16, {2, 8}, at::kLong)).sum().backward();
    opt->step();
    CheckpointState st;
    st.step = step;
    st.rng = capture_rng_state();
    save_checkpoint(checkpoint_dir(tmp.path(), step), cfg, model, opt.get(), st);
  }
  std::string ckpt(int64_t step) const { return checkpoint_dir(tmp.path(), step); }
  std::string root() const { return tmp / "checkpoints"; }
  test::TempDir tmp;
};

// ---- the step is the one in state.json ------------------------------------

TEST_F(RunDir, ACheckpointCopiedUnderALargerStepNameIsRefusedByLoad) {
  save(0);
  save(6);
  fs::copy(ckpt(0), root() + "/step_9223372036854775807");
  try {
    load_checkpoint(tmp.path());
    FAIL() << "a renamed copy was trusted";
  } catch (const FormatError& e) {
    EXPECT_TRUE(contains(e.what(), "step_9223372036854775807: the folder is named for step 9223372036854775807 but "
                                   "its state.json holds step 0"))
        << e.what();
  }
  EXPECT_THROW(load_checkpoint(root() + "/step_9223372036854775807"), FormatError);
  EXPECT_EQ(load_checkpoint(ckpt(6)).state.step, 6);  // the others are unaffected
}

TEST_F(RunDir, ResumeSkipsACheckpointCopiedUnderALargerStepName) {
  save(0);
  save(6);
  fs::copy(ckpt(0), root() + "/step_9223372036854775807");
  const LoadedCheckpoint c = load_resume_checkpoint(tmp.path());
  EXPECT_EQ(c.path, ckpt(6));
  EXPECT_EQ(c.state.step, 6);
}

TEST_F(RunDir, AStepNameBeyondSixtyFourBitsIsAClearErrorNamingTheFolder) {
  save(0);
  fs::copy(ckpt(0), root() + "/step_99999999999999999999");
  for (auto fn : {+[](const std::string& run) { list_checkpoints(run); },
                  +[](const std::string& run) { load_checkpoint(run); },
                  +[](const std::string& run) { load_resume_checkpoint(run); }}) {
    try {
      fn(tmp.path());
      FAIL() << "an out-of-range step name was accepted";
    } catch (const FormatError& e) {
      EXPECT_TRUE(contains(e.what(), "step_99999999999999999999: the step in this checkpoint folder's name is out "
                                     "of range"))
          << e.what();
    }
  }
  EXPECT_EQ(checkpoint_step("a/step_9223372036854775807/"), INT64_MAX);
  EXPECT_EQ(checkpoint_step("a/step_12.tmp-3"), -1);
  EXPECT_THROW(checkpoint_step("a/step_9223372036854775808"), FormatError);
}

// ---- resume falls back past a broken newest checkpoint ------------------------

struct Breakage {
  const char* name;
  void (*apply)(const std::string& dir);
  const char* reason;  // part of the warning's reason
};

const Breakage kBreakages[] = {
    {"truncated model.safetensors",
     [](const std::string& d) { spit(d + "/model.safetensors", slurp(d + "/model.safetensors").substr(0, 100)); },
     "model.safetensors"},
    {"broken state.json", [](const std::string& d) { spit(d + "/state.json", "{\"format\": \"metalm-checkp"); },
     "state.json"},
    {"broken optimizer.pt",
     [](const std::string& d) { spit(d + "/optimizer.pt", slurp(d + "/optimizer.pt").substr(0, 64)); },
     "optimizer.pt"},
    {"optimizer.pt missing", [](const std::string& d) { fs::remove(d + "/optimizer.pt"); }, "optimizer"},
};

TEST_F(RunDir, ResumeFallsBackToThePreviousCheckpointWhenTheNewestIsBroken) {
  for (const auto& b : kBreakages) {
    SCOPED_TRACE(b.name);
    fs::remove_all(root());
    save(4);
    save(8);
    b.apply(ckpt(8));
    const LoadedCheckpoint c = load_resume_checkpoint(tmp.path());
    EXPECT_EQ(c.path, ckpt(4));
    EXPECT_EQ(c.state.step, 4);
    EXPECT_TRUE(fs::exists(ckpt(8))) << "the broken checkpoint is left for inspection";
  }
}

TEST_F(RunDir, ResumeWithNoValidCheckpointNamesTheNewest) {
  save(4);
  kBreakages[0].apply(ckpt(4));
  try {
    load_resume_checkpoint(tmp.path());
    FAIL() << "resumed from a broken checkpoint";
  } catch (const FormatError& e) {
    EXPECT_TRUE(contains(e.what(), "no valid checkpoint to resume")) << e.what();
    EXPECT_TRUE(contains(e.what(), ckpt(4) + " (")) << e.what();
  }
}

// The trainer resumes from the previous checkpoint and then reproduces the
// uninterrupted run exactly.
TEST_F(RunDir, TrainerResumedPastABrokenCheckpointMatchesTheUninterruptedRun) {
  test::write_dataset(tmp / "data");
  auto cfg = test::tiny_config(tmp / "data");
  cfg.train.ckpt_every = 10;
  cfg.train.keep_last = 3;
  const auto full = Trainer(cfg, test::trainer_options(tmp / "a")).run();
  Trainer(cfg, test::trainer_options(tmp / "b", false, 30)).run();
  kBreakages[0].apply(checkpoint_dir(tmp / "b", 30));
  Trainer resumed(cfg, test::trainer_options(tmp / "b", true));
  EXPECT_EQ(resumed.step(), 20);
  const auto rest = resumed.run();
  ASSERT_EQ(rest.losses.size(), 20u);
  for (std::size_t i = 0; i < 20; ++i) EXPECT_EQ(full.losses[20 + i], rest.losses[i]) << 20 + i;
  EXPECT_EQ(load_checkpoint(tmp / "b").state.step, 40);
}

// ---- writing and pruning ---------------------------------------------------------

TEST_F(RunDir, AFailedCheckpointWriteLeavesThePreviousOnesIntactAndNoLeftovers) {
  save(4);
  save(8);
  const std::string before = slurp(ckpt(8) + "/model.safetensors");
  auto cfg = test::tiny_config("unused");
  CausalTransformer model(cfg.model);
  auto opt = make_optimizer(model, cfg.train);
  CheckpointState st;
  st.step = 8;  // over an existing step: the old one must survive too
  try {
    FileSizeLimit limit(16 * 1024);  // the model is about 70 KB
    save_checkpoint(ckpt(8), cfg, model, opt.get(), st);
    FAIL() << "the write did not fail";
  } catch (const IoError& e) {
    EXPECT_TRUE(contains(e.what(), "cannot write checkpoint " + ckpt(8) + ": ")) << e.what();
    EXPECT_TRUE(contains(e.what(), std::strerror(EFBIG))) << e.what();
  }
  EXPECT_EQ(slurp(ckpt(8) + "/model.safetensors"), before);
  EXPECT_EQ(load_resume_checkpoint(tmp.path()).path, ckpt(8));
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(root())) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_00000004", "step_00000008"}));
}

TEST_F(RunDir, PruningLeavesCheckpointsNamedForLaterStepsAndKeepsTheNewOne) {
  for (int64_t s : {2, 4, 6}) save(s);
  fs::copy(ckpt(2), root() + "/step_00000100");  // e.g. broken, skipped by resume
  save(8);
  const auto removed = prune_checkpoints(tmp.path(), RetentionPolicy{1, {}, -1, 8});
  EXPECT_EQ(removed, (std::vector<std::string>{ckpt(2), ckpt(4), ckpt(6)}));
  EXPECT_TRUE(fs::exists(ckpt(8)));
  EXPECT_TRUE(fs::exists(root() + "/step_00000100"));
}

TEST_F(RunDir, OnlyTheTemporariesOfInterruptedWritesAreCleanedUp) {
  save(2);
  for (const char* name : {"step_00000004.tmp-123", "step_00000004.old-7", "step_00000006", "step_notes", "mine"})
    fs::create_directories(root() + "/" + name);
  auto removed = remove_incomplete_checkpoints(tmp.path());
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, (std::vector<std::string>{root() + "/step_00000004.old-7", root() + "/step_00000004.tmp-123",
                                               root() + "/step_00000006"}));
  EXPECT_TRUE(fs::exists(root() + "/step_notes"));
  EXPECT_TRUE(fs::exists(root() + "/mine"));
  EXPECT_TRUE(fs::exists(ckpt(2)));
}

// ---- one process per run directory -----------------------------------------------

TEST(RunDirLock, ASecondHolderFailsAtOnceNamingTheFirstPid) {
  test::TempDir tmp;
  const std::string run = tmp / "run";
  {
    RunDirLock first(run);
    EXPECT_EQ(slurp(run + "/.lock"), std::to_string(::getpid()) + "\n");
    try {
      RunDirLock second(run);
      FAIL() << "two holders";
    } catch (const IoError& e) {
      EXPECT_TRUE(contains(e.what(), "run directory " + run + " is in use by process " + std::to_string(::getpid())))
          << e.what();
    }
  }
  RunDirLock again(run);  // released with its holder
}

TEST(RunDirLock, AStaleLockFileDoesNotBlock) {
  test::TempDir tmp;
  const std::string run = tmp / "run";
  fs::create_directories(run);
  spit(run + "/.lock", "999999999\n");  // left by a process that is gone
  spit(run + "/" + kRunMarker, "{\"format\": \"metalm-run\", \"version\": 1}");
  spit(run + "/metrics.jsonl", "");
  RunDirLock lock(run);
  EXPECT_EQ(slurp(run + "/.lock"), std::to_string(::getpid()) + "\n");
}

TEST(RunDirLock, ARunDirectoryItCreatedAndNothingWroteIsRemovedAgain) {
  test::TempDir tmp;
  { RunDirLock lock(tmp / "fresh"); }
  EXPECT_FALSE(fs::exists(tmp / "fresh"));
  {
    RunDirLock lock(tmp / "used");
    spit(tmp / "used/config.json", "{}");
  }
  EXPECT_TRUE(fs::exists(tmp / "used/config.json"));
}

TEST(RunDirLock, ASecondTrainerOnTheSameRunDirectoryIsRefused) {
  test::TempDir tmp;
  test::write_dataset(tmp / "data");
  const auto cfg = test::tiny_config(tmp / "data");
  Trainer first(cfg, test::trainer_options(tmp / "run"));
  try {
    Trainer second(cfg, test::trainer_options(tmp / "run"));
    FAIL() << "two trainers on one run directory";
  } catch (const IoError& e) {
    EXPECT_TRUE(contains(e.what(), "is in use by process " + std::to_string(::getpid()))) << e.what();
  }
  first.run();
  EXPECT_EQ(load_checkpoint(tmp / "run").state.step, 40);
}

// ---- log appends ---------------------------------------------------------------------

TEST(JsonlLog, AFailedAppendNamesTheFileAndReasonAndLeavesNoPartialLine) {
  test::TempDir tmp;
  const std::string path = tmp / "metrics.jsonl";
  JsonlLog log(path, -1);
  log.write({{"step", 1}, {"loss", 2.5}});
  const std::string one = slurp(path);
  try {
    FileSizeLimit limit(one.size() + 10);  // room for part of the next line only
    log.write({{"step", 2}, {"note", std::string(200, 'x')}});
    FAIL() << "the append did not fail";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot append to " + path + ": " + std::strerror(EFBIG));
  }
  EXPECT_EQ(slurp(path), one);
  log.write({{"step", 3}});
  EXPECT_EQ(slurp(path), one + "{\"step\":3}\n");
}

TEST(JsonlLog, ResumingKeepsTheLinesUpToTheCheckpointAndDropsAPartialLastLine) {
  test::TempDir tmp;
  const std::string path = tmp / "m.jsonl";
  spit(path, "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"step\":4,\"lo");
  { JsonlLog log(path, 3); }
  EXPECT_EQ(slurp(path), "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n");
}

}  // namespace
}  // namespace metalm
