#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/serialize.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "dist_fixture.hpp"
#include "metalm/core/error.hpp"
#include "metalm/train/distributed.hpp"
#include "metalm/train/sharded_sampler.hpp"
#include "train_fixture.hpp"

namespace metalm {
namespace {

using Clock = std::chrono::steady_clock;

// Sets environment variables for one test and restores them afterwards.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::string>& vars) {
    for (const auto& name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) {
      const char* old = std::getenv(name);
      if (old != nullptr) saved_[name] = old;
      ::unsetenv(name);
    }
    for (const auto& [k, v] : vars) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(name);
    for (const auto& [k, v] : saved_) ::setenv(k.c_str(), v.c_str(), 1);
  }

 private:
  std::map<std::string, std::string> saved_;
};

std::string config_error(const std::map<std::string, std::string>& vars,
                         const std::map<std::string, std::string>& given = {}) {
  ScopedEnv env(vars);
  try {
    dist_launch_from_env(given);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

// The gradient-test model: parameters of several shapes (several buckets).
struct TinyNet {
  std::vector<at::Tensor> params;
  explicit TinyNet(int64_t seed) {
    at::manual_seed(seed);
    for (auto shape : std::vector<std::vector<int64_t>>{{16, 8}, {8}, {8, 4}, {4}, {300}})
      params.push_back(at::randn(shape).set_requires_grad(true));
  }
  // Mean over rows of a per-row loss: x [N, 16] -> scalar.
  at::Tensor loss(const at::Tensor& x) const {
    auto h = at::tanh(at::matmul(x, params[0]) + params[1]);  // [N, 8]
    auto y = at::matmul(h, params[2]) + params[3];           // [N, 4]
    return (y.pow(2).sum(1) + (params[4] * params[4]).sum() * 1e-3).mean();
  }
};

at::Tensor global_rows(int64_t n) {
  at::manual_seed(99);
  return at::randn({n, 16});  // [N, 16]
}

TEST(DistLaunch, WorldOfOneNeedsNoVariables) {
  ScopedEnv env({});
  const auto o = dist_launch_from_env();
  EXPECT_EQ(o.world_size, 1);
  EXPECT_EQ(o.rank, 0);
  EXPECT_FALSE(o.distributed());
}

TEST(DistLaunch, ReadsTorchrunVariablesAndFlagsWin) {
  ScopedEnv env({{"RANK", "1"}, {"WORLD_SIZE", "3"}, {"MASTER_ADDR", "10.0.0.2"}, {"MASTER_PORT", "1234"}});
  auto o = dist_launch_from_env();
  EXPECT_EQ(o.rank, 1);
  EXPECT_EQ(o.world_size, 3);
  EXPECT_EQ(o.local_rank, 1);
  EXPECT_EQ(o.master_addr, "10.0.0.2");
  EXPECT_EQ(o.master_port, 1234);
  o = dist_launch_from_env({{"RANK", "2"}, {"MASTER_PORT", "4321"}});
  EXPECT_EQ(o.rank, 2);
  EXPECT_EQ(o.local_rank, 2);
  EXPECT_EQ(o.world_size, 3);
  EXPECT_EQ(o.master_port, 4321);
  // A given value is checked like the variable it stands for.
  EXPECT_NE(config_error({}, {{"RANK", "x"}}).find("RANK = \"x\": expected an integer"), std::string::npos);
}

TEST(DistLaunch, InconsistentVariablesFailNamingTheVariable) {
  const std::map<std::string, std::string> ok = {
      {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "1234"}};
  auto with = [&](const std::string& k, const std::string& v) {
    auto m = ok;
    if (v.empty())
      m.erase(k);
    else
      m[k] = v;
    return m;
  };
  EXPECT_NE(config_error(with("RANK", "2")).find("RANK = 2"), std::string::npos);
  EXPECT_NE(config_error(with("RANK", "x")).find("RANK"), std::string::npos);
  EXPECT_NE(config_error(with("WORLD_SIZE", "0")).find("WORLD_SIZE"), std::string::npos);
  EXPECT_NE(config_error(with("MASTER_ADDR", "")).find("MASTER_ADDR"), std::string::npos);
  EXPECT_NE(config_error(with("MASTER_PORT", "")).find("MASTER_PORT"), std::string::npos);
  EXPECT_NE(config_error(with("MASTER_PORT", "70000")).find("MASTER_PORT"), std::string::npos);
  EXPECT_EQ(config_error(ok), "");
}

TEST(DistributedContext, PortInUseFailsFastNamingMasterPort) {
  const int port = test::free_port();
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  DistLaunch o;
  o.world_size = 2;
  o.master_port = port;
  DistConfig c;
  c.timeout_s = 5;
  const auto t0 = Clock::now();
  try {
    DistributedContext ctx(o, c);
    ADD_FAILURE() << "rank 0 started on a port in use";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("MASTER_PORT=" + std::to_string(port)), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 4.0);
  ::close(fd);
}

TEST(DistributedContext, UnreachableMasterFailsWithinTheTimeoutNamingMasterAddr) {
  DistLaunch o;
  o.world_size = 2;
  o.rank = 1;
  o.master_port = test::free_port();  // nobody listens
  DistConfig c;
  c.timeout_s = 1;
  const auto t0 = Clock::now();
  try {
    DistributedContext ctx(o, c);
    ADD_FAILURE() << "rank 1 joined a master that does not exist";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("MASTER_ADDR=127.0.0.1"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 10.0);
}

TEST(ShardedWindowSampler, RanksPartitionTheSingleProcessMicroBatch) {
  test::TempDir tmp;
  test::write_dataset(tmp / "data");
  const TokenDataset data(tmp / "data/train.bin");
  RandomWindowSampler single(data, 6, 8, 5);
  ShardedWindowSampler r0(data, 2, 8, 5, 0, 3), r1(data, 2, 8, 5, 1, 3), r2(data, 2, 8, 5, 2, 3);
  for (int step = 0; step < 3; ++step) {
    const Batch all = single.next();
    const auto inputs = at::cat({r0.next().inputs, r1.next().inputs, r2.next().inputs});  // [6, 8]
    EXPECT_TRUE(at::equal(inputs, all.inputs)) << "step " << step;
  }
  EXPECT_EQ(r1.state(), single.state());
}

TEST(ShardedWindowSampler, ResumesWithAnotherWorldOnlyForTheSameGlobalBatch) {
  test::TempDir tmp;
  test::write_dataset(tmp / "data");
  const TokenDataset data(tmp / "data/train.bin");
  ShardedWindowSampler two(data, 4, 8, 5, 1, 2);
  two.next();
  ShardedWindowSampler one(data, 8, 8, 5, 0, 1);
  one.restore(two.state());  // 2 x 4 = 1 x 8
  RandomWindowSampler reference(data, 8, 8, 5);
  reference.next();
  EXPECT_TRUE(at::equal(one.next().inputs, reference.next().inputs));

  ShardedWindowSampler four(data, 4, 8, 5, 0, 4);
  try {
    four.restore(two.state());
    ADD_FAILURE() << "restored a global batch of 8 into 16";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch_size = 2"), std::string::npos) << e.what();
  }
}

TEST(RankShare, SharesPartitionTheList) {
  EXPECT_EQ(rank_share(5, 0, 2), (std::vector<int64_t>{0, 2, 4}));
  EXPECT_EQ(rank_share(5, 1, 2), (std::vector<int64_t>{1, 3}));
  EXPECT_TRUE(rank_share(1, 1, 2).empty());
}

// ---- rank side of the multi-process tests ----------------------------------

DistConfig comm_config(double timeout_s, double bucket_mb) {
  DistConfig c;
  c.timeout_s = timeout_s;
  c.bucket_mb = bucket_mb;
  return c;
}

// Each rank: its own initial weights (seed 10 + rank), broadcast from rank 0,
// then two accumulated micro-batches of its rows of the global batch, one
// bucketed allreduce; saves the averaged gradients.
TEST(DistributedRank, Gradients) {
  if (test::scenario() != "gradients") GTEST_SKIP();
  DistributedContext ctx(dist_launch_from_env(), comm_config(20, 0.0005));  // ~500-byte buckets
  TinyNet net(10 + ctx.rank());
  ctx.broadcast(net.params);
  const int64_t b = 3, world = ctx.world_size(), accum = 2;
  const auto x = global_rows(b * world * accum);  // [accum * world * b, 16]
  for (int64_t m = 0; m < accum; ++m)
    (net.loss(x.narrow(0, (m * world + ctx.rank()) * b, b)) / static_cast<double>(accum)).backward();
  ctx.allreduce_gradients(net.params);
  EXPECT_GT(ctx.buckets(), 2);
  std::vector<at::Tensor> out;
  for (auto& p : net.params) out.push_back(p.detach());
  for (auto& p : net.params) out.push_back(p.grad());
  torch::save(out, test::env_or("METALM_TEST_DIR") + "/rank" + std::to_string(ctx.rank()) + ".pt");

  std::vector<double> sums{1.0, static_cast<double>(ctx.rank())};
  ctx.allreduce_sum(sums);
  EXPECT_EQ(sums[0], static_cast<double>(world));
  EXPECT_EQ(sums[1], static_cast<double>(world * (world - 1) / 2));
  ctx.check_same("the test config", "same");
}

// Rank 1 joins, then dies (or hangs); rank 0's next collective must fail.
TEST(DistributedRank, PeerFailure) {
  if (test::scenario() != "die" && test::scenario() != "hang") GTEST_SKIP();
  DistributedContext ctx(dist_launch_from_env(), comm_config(2, 1));
  ctx.barrier();
  if (ctx.rank() == 1) {
    if (test::scenario() == "die") std::_Exit(3);
    std::this_thread::sleep_for(std::chrono::seconds(30));
    return;
  }
  std::vector<double> v{1.0};
  const auto t0 = Clock::now();
  EXPECT_THROW(ctx.allreduce_sum(v), IoError);
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 6.0);
}

// Rank 1 runs another config: both ranks refuse.
TEST(DistributedRank, Mismatch) {
  if (test::scenario() != "mismatch") GTEST_SKIP();
  DistributedContext ctx(dist_launch_from_env(), comm_config(10, 1));
  EXPECT_THROW(ctx.check_same("the resolved config", ctx.rank() == 0 ? "a" : "b"), ConfigError);
}

// ---- parent side -------------------------------------------------------------

TEST(Distributed, AveragedGradientsEqualTheSingleProcessGradient) {
  test::TempDir tmp;
  const auto codes = test::run_ranks("DistributedRank.Gradients", 2,
                                     {{"METALM_TEST_SCENARIO", "gradients"}, {"METALM_TEST_DIR", tmp.path()}});
  ASSERT_EQ(codes, (std::vector<int>{0, 0}));
  TinyNet net(10);  // rank 0's weights, which the broadcast gave rank 1
  net.loss(global_rows(12)).backward();
  for (int r = 0; r < 2; ++r) {
    std::vector<at::Tensor> got;
    torch::load(got, tmp / ("rank" + std::to_string(r) + ".pt"));
    ASSERT_EQ(got.size(), 2 * net.params.size());
    for (std::size_t i = 0; i < net.params.size(); ++i) {
      EXPECT_TRUE(at::equal(got[i], net.params[i].detach())) << "rank " << r << " param " << i;
      EXPECT_TRUE(at::allclose(got[net.params.size() + i], net.params[i].grad(), 1e-5, 1e-6))
          << "rank " << r << " grad " << i;
    }
  }
}

TEST(Distributed, ADeadRankMakesTheOtherFailWithinTheTimeout) {
  const auto t0 = Clock::now();
  const auto codes = test::run_ranks("DistributedRank.PeerFailure", 2, {{"METALM_TEST_SCENARIO", "die"}}, 20);
  EXPECT_EQ(codes, (std::vector<int>{0, 3}));  // rank 0's test passes only if its allreduce threw
  EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 15.0);
}

TEST(Distributed, AHungRankMakesTheOtherFailWithinTheTimeout) {
  const int port = test::free_port();
  const std::map<std::string, std::string> env{{"METALM_TEST_SCENARIO", "hang"}};
  const pid_t r0 = test::spawn_rank("DistributedRank.PeerFailure", 0, 2, port, env);
  const pid_t r1 = test::spawn_rank("DistributedRank.PeerFailure", 1, 2, port, env);
  EXPECT_EQ(test::wait_exit(r0, 20), 0);
  ::kill(r1, SIGKILL);
  test::wait_exit(r1, 5);
}

TEST(Distributed, RanksWithDifferentConfigsBothRefuse) {
  const auto codes = test::run_ranks("DistributedRank.Mismatch", 2, {{"METALM_TEST_SCENARIO", "mismatch"}}, 30);
  EXPECT_EQ(codes, (std::vector<int>{0, 0}));
}

}  // namespace
}  // namespace metalm
