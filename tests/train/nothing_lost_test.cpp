// Nothing the user had is changed or lost, and a run that fails leaves
// nothing half-made: a full disk while writing a checkpoint, links and odd
// files planted at the lock and the logs, directories that are not runs,
// log lines resume did not write, a state.json that does not hold together,
// inputs that fail after the run directory was created, and a finished run
// resumed again.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/jsonl_log.hpp"
#include "metalm/train/optimizer.hpp"
#include "metalm/train/rng_state.hpp"
#include "metalm/train/run_lock.hpp"
#include "metalm/train/trainer.hpp"
#include "support/error_of.hpp"
#include "support/file_size_limit.hpp"
#include "train_fixture.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

using test::contains;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Every file under `dir` with its bytes, to compare a directory before and after.
std::map<std::string, std::string> contents_of(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    out[fs::relative(e.path(), dir).string()] = e.is_regular_file() ? slurp(e.path().string()) : "<dir>";
  return out;
}

// ---- 1. a full disk while a checkpoint is written --------------------------------

TEST(CheckpointWrite, AFullDiskInTheOptimizerArchiveIsAnIoErrorThatLeavesNothing) {
  test::TempDir tmp;
  auto cfg = test::tiny_config("unused");
  torch::manual_seed(1);
  CausalTransformer model(cfg.model);
  auto opt = make_optimizer(model, cfg.train);
  model->forward(at::randint(0, 16, {2, 8}, at::kLong)).sum().backward();
  opt->step();
  CheckpointState state;
  state.step = 3;
  save_checkpoint(tmp / "sizes", cfg, model, opt.get(), state);
  const auto weights = fs::file_size(tmp / "sizes/model.safetensors");
  const auto archive = fs::file_size(tmp / "sizes/optimizer.pt");
  // A limit the weights fit under and the archive (two moments per
  // parameter) does not: torch's zip writer is the one that fails.
  ASSERT_GT(archive, weights + 4096);
  const std::string dir = tmp / "run/checkpoints/step_00000003";
  const std::string message = test::error_of<IoError>([&] {
    test::FileSizeLimit limit(weights + 4096);
    save_checkpoint(dir, cfg, model, opt.get(), state);
  });
  EXPECT_TRUE(contains(message, "cannot write checkpoint " + dir + ": ")) << message;
  EXPECT_TRUE(contains(message, "optimizer.pt: " + std::string(std::strerror(EFBIG)))) << message;
  EXPECT_FALSE(fs::exists(tmp / "run")) << "the temporary or its parents were left behind";
}

// ---- 2. links and odd files where metalm writes -----------------------------------

// An existing run directory (its marker), for a lock to be planted in.
std::string run_dir(const test::TempDir& tmp, const std::string& name) {
  const std::string dir = tmp / name;
  fs::create_directories(dir);
  spit(dir + "/" + kRunMarker, "{\"format\": \"metalm-run\", \"version\": 1}\n");
  return dir;
}

TEST(RunDirLock, ASymlinkedLockIsRefusedAndWhatItPointsToIsUntouched) {
  test::TempDir tmp;
  run_dir(tmp, "run");
  spit(tmp / "precious.txt", "keep me");
  fs::create_symlink(tmp / "precious.txt", tmp / "run/.lock");
  const std::string message = test::error_of<IoError>([&] { RunDirLock lock(tmp / "run"); });
  EXPECT_TRUE(contains(message, "run/.lock is a symbolic link")) << message;
  EXPECT_EQ(slurp(tmp / "precious.txt"), "keep me");
}

TEST(RunDirLock, AFifoOrAHardLinkedFileAtTheLockIsRefused) {
  test::TempDir tmp;
  run_dir(tmp, "fifo");
  ASSERT_EQ(::mkfifo((tmp / "fifo/.lock").c_str(), 0644), 0);
  EXPECT_TRUE(contains(test::error_of<IoError>([&] { RunDirLock lock(tmp / "fifo"); }), "not a regular file"));
  run_dir(tmp, "linked");
  spit(tmp / "precious.txt", "keep me");
  fs::create_hard_link(tmp / "precious.txt", tmp / "linked/.lock");
  EXPECT_TRUE(contains(test::error_of<IoError>([&] { RunDirLock lock(tmp / "linked"); }), "2 hard links"));
  EXPECT_EQ(slurp(tmp / "precious.txt"), "keep me");
}

TEST(JsonlLog, ASymlinkAtTheLogIsReplacedNeverWrittenThrough) {
  test::TempDir tmp;
  spit(tmp / "precious.txt", "keep me");
  fs::create_symlink(tmp / "precious.txt", tmp / "metrics.jsonl");
  {
    JsonlLog log(tmp / "metrics.jsonl", -1);
    log.write({{"step", 1}});
  }
  EXPECT_EQ(slurp(tmp / "precious.txt"), "keep me");
  EXPECT_FALSE(fs::is_symlink(tmp / "metrics.jsonl"));
  EXPECT_EQ(slurp(tmp / "metrics.jsonl"), "{\"step\":1}\n");
}

// ---- 3. only empty directories and runs are run directories ----------------------

TEST(RunDirLock, ADirectoryThatIsNotARunIsRefusedAndLeftAsItWas) {
  test::TempDir tmp;
  fs::create_directories(tmp / "mine");
  spit(tmp / "mine/config.json", "{\"my\": \"settings\"}\n");
  spit(tmp / "mine/metrics.jsonl", "my numbers\n");
  const auto before = contents_of(tmp / "mine");
  const std::string message = test::error_of<ConfigError>([&] { RunDirLock lock(tmp / "mine"); });
  EXPECT_TRUE(contains(message, "is not empty and is not a metalm run")) << message;
  EXPECT_EQ(contents_of(tmp / "mine"), before);
}

TEST(RunDirLock, ANewOrEmptyDirectoryIsMarkedAsARun) {
  test::TempDir tmp;
  fs::create_directories(tmp / "empty");
  for (const std::string& dir : {tmp / "empty", tmp / "new"}) {
    RunDirLock lock(dir);
    EXPECT_EQ(read_json_file(dir + "/" + kRunMarker), (nlohmann::json{{"format", "metalm-run"}, {"version", 1}}));
    EXPECT_EQ(run_dir_refusal(dir), "");
  }
}

TEST(RunDirLock, ARunWrittenBeforeTheMarkerIsRecognisedAndMarked) {
  test::TempDir tmp;
  const std::string run = tmp / "old";
  fs::create_directories(run);
  write_json_file(run + "/config.json", to_json(test::tiny_config("data")));
  spit(run + "/metrics.jsonl", "{\"event\":\"train\",\"step\":1}\n");
  {
    RunDirLock lock(run);
  }
  EXPECT_TRUE(fs::is_regular_file(run + "/" + kRunMarker));
  EXPECT_EQ(slurp(run + "/metrics.jsonl"), "{\"event\":\"train\",\"step\":1}\n");
}

TEST(RunDirLock, AMarkerThatIsNotMetalmsIsRefused) {
  test::TempDir tmp;
  fs::create_directories(tmp / "odd");
  spit(tmp / "odd" + "/" + kRunMarker, "{\"format\": \"something-else\"}");
  EXPECT_TRUE(contains(test::error_of<FormatError>([&] { RunDirLock lock(tmp / "odd"); }), "not a metalm run marker"));
}

TEST(RunDirLock, ARunThatFailsBeforeWritingAnythingRemovesTheDirectoryItCreated) {
  test::TempDir tmp;
  { RunDirLock lock(tmp / "brief"); }
  EXPECT_FALSE(fs::exists(tmp / "brief"));
}

// ---- 5. resume never drops a line it did not write --------------------------------

const JsonlRecordTest metrics_record = [](const nlohmann::json& j) {
  return j.value("event", nlohmann::json()) == "train";
};

TEST(JsonlResume, DropsOnlyItsOwnRecordsAfterTheStepAndACutOffLastLine) {
  const std::string text =
      "{\"event\":\"train\",\"step\":1}\n{\"note\":\"mine\",\"step\":2}\n{\"event\":\"train\",\"step\":5}\n{\"ev";
  std::size_t torn = 0;
  EXPECT_EQ(jsonl_lines_to_keep(text, "m.jsonl", 3, metrics_record, &torn),
            "{\"event\":\"train\",\"step\":1}\n{\"note\":\"mine\",\"step\":2}\n");
  EXPECT_EQ(torn, 4u);
}

TEST(JsonlResume, ALineItDidNotWriteStopsTheResumeNamingFileAndLine) {
  const std::string cases[] = {
      "{\"event\":\"train\",\"step\":1}\nnot json\n{\"event\":\"train\",\"step\":2}\n",  // line 2 does not parse
      "{\"event\":\"train\",\"step\":1}\n{\"note\":\"no step\"}\n",                      // line 2 has no step
      "{\"event\":\"train\",\"step\":1}\n{\"note\":\"mine\",\"step\":9}\n",              // line 2 is not a record
  };
  for (const std::string& text : cases) {
    const std::string message =
        test::error_of<FormatError>([&] { jsonl_lines_to_keep(text, "runs/x/metrics.jsonl", 3, metrics_record); });
    EXPECT_TRUE(contains(message, "runs/x/metrics.jsonl:2: ")) << message;
  }
}

TEST(JsonlLog, AResumeThatStopsLeavesTheFileAsItWas) {
  test::TempDir tmp;
  const std::string path = tmp / "metrics.jsonl", text = "{\"event\":\"train\",\"step\":1}\nmy note\n";
  spit(path, text);
  EXPECT_THROW(JsonlLog(path, 1, metrics_record), FormatError);
  EXPECT_EQ(slurp(path), text);
}

// ---- 7. a state.json that does not hold together -----------------------------------

class StateJson : public ::testing::Test {
 protected:
  void SetUp() override {
    test::write_dataset(tmp / "data");
    config = test::tiny_config(tmp / "data");
    config.train.steps = 4;
    config.train.ckpt_every = 4;
    config.train.grad_accum = 2;
    Trainer(config, test::trainer_options(tmp / "run")).run();
    ckpt = checkpoint_dir(tmp / "run", 4);
    state = read_json_file(ckpt + "/state.json");
  }
  // load_checkpoint's message with `edit` applied to state.json.
  std::string refusal(const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json s = state;
    edit(s);
    write_json_file(ckpt + "/state.json", s);
    return test::error_of<FormatError>([&] { load_checkpoint(ckpt); });
  }
  test::TempDir tmp;
  RunConfig config;
  std::string ckpt;
  nlohmann::json state;
};

TEST_F(StateJson, TheSamplerCounterMustFollowFromTheStep) {
  ASSERT_EQ(state["sampler"]["step"], 8);  // 4 updates of 2 micro-batches
  for (const int64_t bad : {int64_t{-1}, int64_t{1} << 62, int64_t{4}, int64_t{9}}) {
    const std::string message = refusal([&](nlohmann::json& s) { s["sampler"]["step"] = bad; });
    EXPECT_TRUE(contains(message, ckpt + "/state.json: \"sampler\".\"step\" is " + std::to_string(bad))) << message;
  }
}

TEST_F(StateJson, EveryFieldMustAgreeWithTheOthersAndTheConfig) {
  const std::pair<std::function<void(nlohmann::json&)>, std::string> edits[] = {
      {[](nlohmann::json& s) { s["sampler"]["seed"] = 8; }, "\"sampler\".\"seed\""},
      {[](nlohmann::json& s) { s["sampler"]["batch"] = 16; }, "\"sampler\".\"batch\""},
      {[](nlohmann::json& s) { s["sampler"]["seq_len"] = 4; }, "\"sampler\".\"seq_len\""},
      {[](nlohmann::json& s) { s["sampler"]["kind"] = "sequential"; }, "\"sampler\".\"kind\""},
      {[](nlohmann::json& s) { s["extra"]["best_step"] = 5; }, "\"extra\".\"best_step\""},
      {[](nlohmann::json& s) { s["best_val_loss"] = -1.0; }, "\"best_val_loss\""},
      {[](nlohmann::json& s) { s["best_val_loss"] = "low"; }, "\"best_val_loss\""},
      {[](nlohmann::json& s) { s["extra"]["elapsed_s"] = -3.0; }, "\"extra\".\"elapsed_s\""},
      {[](nlohmann::json& s) { s["extra"]["world_size"] = 0; }, "\"extra\".\"world_size\""},
      {[](nlohmann::json& s) { s["extra"]["tokens"] = 1; }, "\"extra\".\"tokens\""},
      {[](nlohmann::json& s) { s["extra"]["sampler_origin"] = {{"step", 9}, {"sampler_step", 9}}; },
       "\"extra\".\"sampler_origin\""},
      {[](nlohmann::json& s) { s["tokenizer"] = 3; }, "\"tokenizer\""},
  };
  for (const auto& [edit, key] : edits) {
    const std::string message = refusal(edit);
    EXPECT_TRUE(contains(message, ckpt + "/state.json: " + key)) << key << ": " << message;
  }
}

TEST_F(StateJson, AResumeThatChangesGradAccumStaysConsistent) {
  RunConfig more = config;
  more.train.steps = 8;
  more.train.grad_accum = 1;
  Trainer(more, test::trainer_options(tmp / "run", /*resume=*/true)).run();
  const LoadedCheckpoint after = load_checkpoint(checkpoint_dir(tmp / "run", 8));
  EXPECT_EQ(after.state.sampler["step"], 8 + 4 * 1);
  EXPECT_EQ(after.state.extra["sampler_origin"], (nlohmann::json{{"step", 4}, {"sampler_step", 8}}));
}

// ---- 12. every input is checked before the run directory is written -------------

TEST(TrainerInputs, AMissingTunedLensFailsBeforeTheRunDirectoryExists) {
  test::TempDir tmp;
  test::write_dataset(tmp / "data");
  RunConfig c = test::tiny_config(tmp / "data");
  c.analysis.every = 1;
  c.analysis.lens = "tuned:" + (tmp / "no-such-lens.safetensors");
  EXPECT_THROW(Trainer(c, test::trainer_options(tmp / "run")), IoError);
  EXPECT_FALSE(fs::exists(tmp / "run"));
}

TEST(TrainerInputs, MissingDataFailsBeforeTheRunDirectoryExists) {
  test::TempDir tmp;
  EXPECT_THROW(Trainer(test::tiny_config(tmp / "no-data"), test::trainer_options(tmp / "run")), Error);
  EXPECT_FALSE(fs::exists(tmp / "run"));
}

// ---- 16. a finished run resumed again ----------------------------------------------

TEST(TrainerResume, AFinishedRunReportsItsFinalFiguresAndChangesNothing) {
  test::TempDir tmp;
  test::write_dataset(tmp / "data");
  RunConfig c = test::tiny_config(tmp / "data");
  c.train.steps = 4;
  c.train.eval_every = 2;
  const TrainSummary first = Trainer(c, test::trainer_options(tmp / "run")).run();
  const auto before = contents_of(tmp / "run");
  const TrainSummary again = Trainer(c, test::trainer_options(tmp / "run", /*resume=*/true)).run();
  EXPECT_TRUE(again.already_complete);
  EXPECT_FALSE(first.already_complete);
  EXPECT_EQ(again.end_step, 4);
  EXPECT_EQ(again.last_val_loss, first.last_val_loss);  // read back from metrics.jsonl, to the digit JSON keeps
  EXPECT_EQ(again.best_val_loss, first.best_val_loss);
  EXPECT_TRUE(again.losses.empty());
  EXPECT_EQ(contents_of(tmp / "run"), before);
}

}  // namespace
}  // namespace metalm
