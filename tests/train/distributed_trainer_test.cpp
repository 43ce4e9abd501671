// The trainer as one rank of two, against a single process with the same
// global batch.
#include <gtest/gtest.h>

#include <signal.h>

#include <filesystem>
#include <fstream>

#include "dist_fixture.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/train/trainer.hpp"
#include "train_fixture.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

std::vector<nlohmann::json> events(const std::string& path, const std::string& event) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.value("event", "") == event) out.push_back(j);
  }
  return out;
}

// batch_size is per rank: 2 ranks x 4 here equal one process x 8.
RunConfig dist_config(const std::string& data_dir, int64_t batch_size, int64_t steps) {
  RunConfig c = test::tiny_config(data_dir);
  c.train.steps = steps;
  c.train.batch_size = batch_size;
  c.train.grad_accum = 2;
  c.train.eval_every = 5;
  c.train.ckpt_every = 5;
  c.dist.timeout_s = 5;
  c.analysis.every = 5;  // 3 batches: rank 0 analyses two, rank 1 one
  c.analysis.batches = 3;
  c.analysis.batch_size = 2;
  resolve(c);
  return c;
}

TrainerOptions dist_trainer_options(const std::string& run_dir, bool resume, int64_t stop_at) {
  TrainerOptions o = test::trainer_options(run_dir, resume, stop_at);
  o.launch = dist_launch_from_env();
  return o;
}

// Rank side: trains per METALM_TEST_* (steps, stop_at, resume).
TEST(DistributedTrainerRank, Train) {
  if (test::scenario() != "train") GTEST_SKIP();
  const std::string dir = test::env_or("METALM_TEST_DIR");
  const int64_t steps = std::stoll(test::env_or("METALM_TEST_STEPS", "10"));
  const int64_t stop_at = std::stoll(test::env_or("METALM_TEST_STOP_AT", "0"));
  const bool resume = test::env_or("METALM_TEST_RESUME") == "1";
  Trainer trainer(dist_config(dir + "/data", 4, steps),
                  dist_trainer_options(dir + "/" + test::env_or("METALM_TEST_RUN"), resume, stop_at));
  trainer.run();
}

class DistributedTrainer : public ::testing::Test {
 protected:
  void SetUp() override { test::write_dataset(tmp / "data"); }

  std::vector<int> two_ranks(const std::string& run, int64_t steps, int64_t stop_at = 0, bool resume = false) {
    return test::run_ranks("DistributedTrainerRank.Train", 2,
                           {{"METALM_TEST_SCENARIO", "train"},
                            {"METALM_TEST_DIR", tmp.path()},
                            {"METALM_TEST_RUN", run},
                            {"METALM_TEST_STEPS", std::to_string(steps)},
                            {"METALM_TEST_STOP_AT", std::to_string(stop_at)},
                            {"METALM_TEST_RESUME", resume ? "1" : "0"}},
                           120);
  }

  // One process, the same global batch (8 sequences x 2 micro-batches).
  void one_process(const std::string& run, bool resume = false, int64_t batch_size = 8) {
    Trainer(dist_config(tmp / "data", batch_size, 10), test::trainer_options(tmp / run, resume)).run();
  }

  static void expect_same_metrics(const std::string& a, const std::string& b, double tol) {
    for (const std::string event : {"train", "eval"}) {
      const auto ea = events(a, event), eb = events(b, event);
      ASSERT_EQ(ea.size(), eb.size()) << event;
      ASSERT_FALSE(ea.empty());
      const std::string key = event == "train" ? "loss" : "val_loss";
      for (std::size_t i = 0; i < ea.size(); ++i) {
        EXPECT_EQ(ea[i]["step"], eb[i]["step"]);
        EXPECT_NEAR(ea[i][key].get<double>(), eb[i][key].get<double>(), tol) << event << " step " << ea[i]["step"];
      }
    }
  }

  test::TempDir tmp;
};

TEST_F(DistributedTrainer, TwoRanksLogTheLossesOfOneProcessWithTheSameGlobalBatch) {
  ASSERT_EQ(two_ranks("two", 10), (std::vector<int>{0, 0}));
  one_process("one");
  expect_same_metrics(tmp / "one/metrics.jsonl", tmp / "two/metrics.jsonl", 1e-5);
  EXPECT_EQ(events(tmp / "two/metrics.jsonl", "train").front()["tokens"], 8 * 2 * 16);

  // The ranks share the analysis; its numbers are those of one process: exact
  // at step 0 (same weights), within float round-off of training later.
  const auto one = events(tmp / "one/analysis.jsonl", ""), two = events(tmp / "two/analysis.jsonl", "");
  ASSERT_EQ(one.size(), 3u);
  ASSERT_EQ(two.size(), one.size());
  EXPECT_EQ(two[0].dump(), one[0].dump());
  for (std::size_t i = 0; i < one.size(); ++i) {
    EXPECT_EQ(two[i]["step"], one[i]["step"]);
    EXPECT_EQ(two[i]["tokens"], one[i]["tokens"]);
    EXPECT_NEAR(two[i]["final_loss"].get<double>(), one[i]["final_loss"].get<double>(), 1e-4);
    for (std::size_t k = 0; k < one[i]["steps"].size(); ++k)
      EXPECT_NEAR(two[i]["steps"][k]["alignment"]["mean"].get<double>(),
                  one[i]["steps"][k]["alignment"]["mean"].get<double>(), 1e-4);
  }
}

TEST_F(DistributedTrainer, ATwoRankCheckpointResumesExactly) {
  ASSERT_EQ(two_ranks("full", 10), (std::vector<int>{0, 0}));
  ASSERT_EQ(two_ranks("cut", 10, 5), (std::vector<int>{0, 0}));
  ASSERT_EQ(two_ranks("cut", 10, 0, true), (std::vector<int>{0, 0}));
  expect_same_metrics(tmp / "full/metrics.jsonl", tmp / "cut/metrics.jsonl", 0.0);

  // Another world size re-splits the same global batch: one process x 8.
  fs::create_directories(tmp / "single");
  fs::copy(tmp / "cut", tmp / "single", fs::copy_options::recursive);
  fs::remove_all(tmp / "single/checkpoints/step_00000010");
  one_process("single", true);
  expect_same_metrics(tmp / "full/metrics.jsonl", tmp / "single/metrics.jsonl", 1e-5);

  // A different global batch is refused, naming the batch size that works.
  try {
    one_process("cut", true, 4);
    ADD_FAILURE() << "resumed a global batch of 8 with 4";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch_size = 8"), std::string::npos) << e.what();
  }
}

TEST_F(DistributedTrainer, KillingOneRankMakesTheOtherExitNonZeroWithinTheTimeout) {
  const int port = test::free_port();
  const std::map<std::string, std::string> env{{"METALM_TEST_SCENARIO", "train"},
                                               {"METALM_TEST_DIR", tmp.path()},
                                               {"METALM_TEST_RUN", "killed"},
                                               {"METALM_TEST_STEPS", "100000"}};
  const pid_t r0 = test::spawn_rank("DistributedTrainerRank.Train", 0, 2, port, env);
  const pid_t r1 = test::spawn_rank("DistributedTrainerRank.Train", 1, 2, port, env);
  // Wait until training is under way, then kill rank 1.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (events(tmp / "killed/metrics.jsonl", "train").size() < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ::kill(r1, SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  const int code = test::wait_exit(r0, 5 + 10);
  EXPECT_GT(code, 0);  // -1 would mean it hung and had to be killed
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5 + 5);
  test::wait_exit(r1, 5);
}

}  // namespace
}  // namespace metalm
