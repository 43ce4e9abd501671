// precision auto on a CPU: the probe that times the model's matmuls in fp32
// and bf16, its per-machine cache (hit; missed when the CPU, its flags, the
// libraries, the BLAS kernel or the threads differ; a corrupt file ignored)
// and its choice. The timings are injected, except in the one test that runs
// the real probe and checks only that it chooses one of the two.
#include <gtest/gtest.h>

#include <fstream>

#include "metalm/config/json.hpp"
#include "metalm/core/file.hpp"
#include "metalm/model/device.hpp"
#include "support/temp_dir.hpp"
#include "tiny_configs.hpp"

namespace metalm {
namespace {

MachineFacts facts() { return {"Test CPU 9000", "sse2 avx2 fma avx512f avx512_bf16", "libtorch 1.13.1", "SkylakeX", 2}; }

// Seconds per precision, counting the measurements.
struct FakeTimer {
  double fp32 = 1.0, bf16 = 0.5;
  int calls = 0;
  double operator()(Precision p, const std::vector<GemmShape>&) {
    ++calls;
    return p == Precision::Bf16 ? bf16 : fp32;
  }
};

class PrecisionProbeTest : public ::testing::Test {
 protected:
  test::TempDir tmp;
  FakeTimer timer;
  MachineFacts machine = facts();
  const std::vector<GemmShape> shapes = model_gemm_shapes(testing::tiny_config(), 32);

  ProbeOptions options() {
    ProbeOptions o;
    o.cache_path = tmp / "cache/metalm/precision.json";
    o.facts = [this] { return machine; };
    o.seconds = [this](Precision p, const std::vector<GemmShape>& s) { return timer(p, s); };
    return o;
  }
};

TEST(ModelGemmShapes, AreTheProjectionsOfEveryBlockAndTheUnembedding) {
  const ModelConfig cfg = testing::tiny_config();  // d 16, d_mlp 24, 3 layers, vocab 19
  const std::vector<GemmShape> s = model_gemm_shapes(cfg, 32);
  ASSERT_EQ(s.size(), 5u);
  const auto same = [](const GemmShape& a, const GemmShape& b) {
    return a.m == b.m && a.k == b.k && a.n == b.n && a.count == b.count;
  };
  EXPECT_TRUE(same(s[0], {32, 16, 48, 3}));  // qkv
  EXPECT_TRUE(same(s[1], {32, 16, 16, 3}));  // attention output
  EXPECT_TRUE(same(s[2], {32, 16, 24, 3}));  // c_fc
  EXPECT_TRUE(same(s[3], {32, 24, 16, 3}));  // c_proj
  EXPECT_TRUE(same(s[4], {32, 16, 19, 1}));  // unembedding
  ModelConfig attention_only = cfg;
  attention_only.mlp = MlpKind::None;
  EXPECT_EQ(model_gemm_shapes(attention_only, 32).size(), 3u);
}

TEST_F(PrecisionProbeTest, ChoosesTheFasterAndKeepsFp32OnATie) {
  timer.bf16 = 0.5;  // twice fp32's speed
  PrecisionProbe p = probe_precision(shapes, options());
  EXPECT_EQ(p.choice, Precision::Bf16);
  EXPECT_FALSE(p.cached);
  EXPECT_NEAR(p.bf16_gflops / p.fp32_gflops, 2.0, 1e-9);
  machine.threads = 1;  // a new key: measured again
  timer.bf16 = 0.99;    // 1 % faster is a tie
  EXPECT_EQ(probe_precision(shapes, options()).choice, Precision::Fp32);
  machine.threads = 3;
  timer.bf16 = 2.0;
  EXPECT_EQ(probe_precision(shapes, options()).choice, Precision::Fp32);
}

TEST_F(PrecisionProbeTest, ASecondProbeOnTheSameMachineReadsTheCache) {
  const PrecisionProbe first = probe_precision(shapes, options());
  EXPECT_EQ(timer.calls, 2);
  timer.bf16 = 4.0;  // would choose fp32 if it measured
  const PrecisionProbe second = probe_precision(shapes, options());
  EXPECT_EQ(timer.calls, 2);
  EXPECT_TRUE(second.cached);
  EXPECT_EQ(second.choice, first.choice);
  EXPECT_DOUBLE_EQ(second.fp32_gflops, first.fp32_gflops);
  EXPECT_DOUBLE_EQ(second.bf16_gflops, first.bf16_gflops);
}

TEST_F(PrecisionProbeTest, AnyChangeOfCpuFlagsLibrariesKernelThreadsOrShapesMeasuresAgain) {
  probe_precision(shapes, options());
  int calls = timer.calls;
  const std::vector<std::function<void(MachineFacts&)>> changes = {
      [](MachineFacts& f) { f.cpu = "Another CPU"; },
      [](MachineFacts& f) { f.flags += " amx_bf16"; },
      [](MachineFacts& f) { f.libraries = "libtorch 2.1"; },
      [](MachineFacts& f) { f.blas_kernel = "Prescott"; },
      [](MachineFacts& f) { f.threads = 8; },
  };
  for (std::size_t i = 0; i < changes.size(); ++i) {
    machine = facts();
    changes[i](machine);
    EXPECT_FALSE(probe_precision(shapes, options()).cached) << "change " << i;
    EXPECT_EQ(timer.calls, calls + 2) << "change " << i;
    calls = timer.calls;
  }
  machine = facts();
  EXPECT_FALSE(probe_precision(model_gemm_shapes(testing::tiny_config(), 64), options()).cached);
  // Every machine's result is kept: the first is still there.
  EXPECT_TRUE(probe_precision(shapes, options()).cached);
}

TEST_F(PrecisionProbeTest, ACorruptCacheIsIgnoredAndRewritten) {
  const std::string path = options().cache_path;
  for (const char* junk : {"{\"format\": \"metalm-precision-probe\", \"version\": 1, \"entr", "[1, 2, 3]",
                           "{\"format\": \"metalm-precision-probe\", \"version\": 99, \"entries\": []}",
                           "{\"format\": \"metalm-precision-probe\", \"version\": 1, \"entries\": [7, {\"facts\": 1}]}",
                           "\xff\xfe garbage"}) {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    std::ofstream(path) << junk;
    const int calls = timer.calls;
    PrecisionProbe p;
    ASSERT_NO_THROW(p = probe_precision(shapes, options())) << junk;
    EXPECT_FALSE(p.cached) << junk;
    EXPECT_EQ(timer.calls, calls + 2) << junk;
    // Rewritten as a valid cache that the next probe reads.
    EXPECT_TRUE(probe_precision(shapes, options()).cached) << junk;
    std::filesystem::remove(path);
  }
}

TEST_F(PrecisionProbeTest, AnEntryWithAnUnknownChoiceIsNotUsed) {
  probe_precision(shapes, options());
  const std::string path = options().cache_path;
  nlohmann::json j = parse_json(read_file(path), path, JsonError::Format);
  j["entries"][0]["choice"] = "fp8";
  std::ofstream(path) << j.dump();
  EXPECT_FALSE(probe_precision(shapes, options()).cached);
}

TEST_F(PrecisionProbeTest, AnUnwritableCacheOnlyCostsTheCache) {
  std::ofstream(tmp / "file") << "not a directory";
  ProbeOptions o = options();
  o.cache_path = tmp / "file/metalm/precision.json";
  EXPECT_NO_THROW(probe_precision(shapes, o));
  EXPECT_FALSE(probe_precision(shapes, o).cached);
}

TEST_F(PrecisionProbeTest, TheRealProbeChoosesOneOfTheTwo) {
  ProbeOptions o;
  o.cache_path = tmp / "precision.json";
  const PrecisionProbe p = probe_precision(shapes, o);
  EXPECT_TRUE(p.choice == Precision::Fp32 || p.choice == Precision::Bf16);
  EXPECT_GT(p.fp32_gflops, 0);
  EXPECT_GT(p.bf16_gflops, 0);
  EXPECT_TRUE(probe_precision(shapes, o).cached);
}

TEST(Precision, ForcedChoicesStandAndCudaIsBf16) {
  const c10::Device cpu(c10::kCPU), cuda(c10::kCUDA, 0);
  const ModelConfig cfg = testing::tiny_config();
  EXPECT_EQ(resolve_precision(Precision::Fp32, cpu, cfg), Precision::Fp32);
  EXPECT_EQ(resolve_precision(Precision::Bf16, cpu, cfg), Precision::Bf16);
  EXPECT_EQ(resolve_precision(Precision::Auto, cuda, cfg), Precision::Bf16);
  if (!native_bf16(cpu)) {
    EXPECT_EQ(resolve_precision(Precision::Auto, cpu, cfg), Precision::Fp32);
  }
}

}  // namespace
}  // namespace metalm
