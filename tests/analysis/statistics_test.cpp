// The per-position statistics are declared once (kStateStatistics,
// kStepStatistics in trajectory.hpp); these tests walk those lists, so a
// statistic added there is checked everywhere it must appear: initialised
// and computed by the analyser, joined by concat, carried by the exchange
// format between ranks, aggregated into the JSON and documented.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/utils.h>

#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "lens_fixture.hpp"
#include "../model/tiny_configs.hpp"
#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/report.hpp"

namespace metalm {
namespace {

constexpr int64_t B = 3, T = 6, d = 8, V = 11;

// Three random states and a random lens: every statistic is finite.
struct RandomTrajectory {
  testing::RandomLens lens{d, V, 21};
  at::Tensor targets;
  std::unique_ptr<LensObjective> objective;
  std::vector<at::Tensor> states;

  explicit RandomTrajectory(uint64_t seed) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    targets = at::randint(0, V, {B, T}, gen, at::TensorOptions(at::kLong));
    targets.select(1, T - 1).fill_(-1);  // no next token
    objective = std::make_unique<LensObjective>(lens.fn(), targets, V);
    for (int k = 0; k < 3; ++k) states.push_back(at::normal(0.0, 1.0, {B, T, d}, gen, at::TensorOptions(at::kDouble)));
  }
  Trajectory analyse(int64_t chunk = 2048) const {
    AnalysisConfig c;
    c.chunk = chunk;
    return analyze_trajectory(states, {"a", "b", "c"}, *objective, c);
  }
};

ModelConfig tiny_model() { return testing::small_config(V, T, 16, 2); }

Batch random_batch(uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const at::Tensor seq = at::randint(0, V, {B, T + 1}, gen, at::TensorOptions(at::kLong));
  Batch b{seq.narrow(1, 0, T).contiguous(), seq.narrow(1, 1, T).contiguous()};
  b.targets.index_put_({0, at::indexing::Slice(4, at::indexing::None)}, -1);  // positions without a next token
  return b;
}

DatasetMeta counts_meta() {
  DatasetMeta meta;
  meta.vocab_size = V;
  for (int64_t i = 0; i < V; ++i) meta.train_counts.push_back((i * 7) % 13 * 10);
  return meta;
}

// Mean of the finite values, computed with torch (independently of summary.cpp).
double torch_mean(const at::Tensor& t) {
  const at::Tensor finite = t.masked_select(at::isfinite(t));
  return finite.numel() ? finite.mean().item<double>() : NAN;
}

TEST(Statistics, KeysAreUnique) {
  std::set<std::string> state, step;
  for (const auto& s : kStateStatistics) EXPECT_TRUE(state.insert(s.key).second) << s.key;
  for (const auto& s : kStepStatistics) EXPECT_TRUE(step.insert(s.key).second) << s.key;
  for (const auto& s : kDerivedStepStatistics) EXPECT_TRUE(step.insert(s.key).second) << s.key;
}

TEST(Statistics, AnalyserFillsEveryStatisticItsRecordsHold) {
  const RandomTrajectory f(1);
  const Trajectory tr = f.analyse();
  ASSERT_EQ(tr.states.size(), 3u);
  for (size_t k = 0; k < tr.states.size(); ++k)
    for (const auto& s : kStateStatistics) {
      const at::Tensor& t = tr.states[k].*s.member;
      ASSERT_EQ(t.defined(), holds(s.presence, k, tr.states.size())) << s.key << " of state " << k;
      if (!t.defined()) continue;
      EXPECT_EQ(t.numel(), tr.count()) << s.key;
      EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << s.key << " of state " << k << " left NaN";
    }
  for (const auto& st : tr.steps)
    for (const auto& s : kStepStatistics) {
      const at::Tensor& t = st.*s.member;
      ASSERT_TRUE(t.defined()) << s.key;
      EXPECT_EQ(t.numel(), tr.count()) << s.key;
      EXPECT_TRUE(at::isfinite(t).all().item<bool>()) << s.key << " left NaN";
    }
}

TEST(Statistics, ChunkedAnalysisFillsEveryStatisticLikeOneChunk) {
  const RandomTrajectory f(2);
  const Trajectory one = f.analyse(), chunked = f.analyse(4);
  for (size_t k = 0; k < one.states.size(); ++k)
    for (const auto& s : kStateStatistics)
      if (holds(s.presence, k, one.states.size())) {
        EXPECT_TRUE(at::allclose(one.states[k].*s.member, chunked.states[k].*s.member, 1e-10, 1e-12)) << s.key;
      }
  for (size_t k = 0; k < one.steps.size(); ++k)
    for (const auto& s : kStepStatistics)
      EXPECT_TRUE(at::allclose(one.steps[k].*s.member, chunked.steps[k].*s.member, 1e-10, 1e-12)) << s.key;
}

TEST(Statistics, ConcatJoinsEveryStatistic) {
  const Trajectory a = RandomTrajectory(3).analyse(), b = RandomTrajectory(4).analyse();
  const Trajectory both = concat({a, b});
  for (size_t k = 0; k < a.states.size(); ++k)
    for (const auto& s : kStateStatistics) {
      const at::Tensor& t = both.states[k].*s.member;
      if (!holds(s.presence, k, a.states.size())) {
        EXPECT_FALSE(t.defined()) << s.key;
        continue;
      }
      EXPECT_TRUE(at::equal(t, at::cat({a.states[k].*s.member, b.states[k].*s.member}))) << s.key;
    }
  for (size_t k = 0; k < a.steps.size(); ++k)
    for (const auto& s : kStepStatistics)
      EXPECT_TRUE(at::equal(both.steps[k].*s.member, at::cat({a.steps[k].*s.member, b.steps[k].*s.member})))
          << s.key;
  // The null band's sums and counts are totals over the batches.
  for (size_t k = 0; k < a.steps.size(); ++k) {
    EXPECT_TRUE(at::equal(both.steps[k].null_sum, a.steps[k].null_sum + b.steps[k].null_sum));
    EXPECT_TRUE(at::equal(both.steps[k].null_count, a.steps[k].null_count + b.steps[k].null_count));
  }
}

TEST(Statistics, ExchangeFormatCarriesEveryStatisticExactly) {
  torch::manual_seed(5);
  CausalTransformer model(tiny_model());
  model->eval();
  const Batch batch = random_batch(6);
  for (auto g : {Granularity::Block, Granularity::Sublayer}) {
    AnalysisConfig c;
    c.granularity = g;
    const BatchAnalysis part = analyze_batch(model, batch, 0, c);
    const BatchAnalysis back = unpack(pack(part), model->config(), batch, c);
    const Trajectory &a = part.trajectory, &b = back.trajectory;
    ASSERT_EQ(b.states.size(), a.states.size());
    ASSERT_EQ(b.steps.size(), a.steps.size());
    EXPECT_EQ(back.nll_sum, part.nll_sum);
    for (auto index : {&Trajectory::rows, &Trajectory::positions, &Trajectory::current_token, &Trajectory::target_token})
      EXPECT_TRUE(at::equal(b.*index, a.*index));
    for (size_t k = 0; k < a.states.size(); ++k) {
      EXPECT_EQ(b.states[k].site, a.states[k].site);
      for (const auto& s : kStateStatistics) {
        if (!holds(s.presence, k, a.states.size())) {
          EXPECT_FALSE((b.states[k].*s.member).defined()) << s.key;
          continue;
        }
        EXPECT_TRUE(at::equal(b.states[k].*s.member, a.states[k].*s.member)) << s.key << " of state " << k;
      }
    }
    for (size_t k = 0; k < a.steps.size(); ++k) {
      EXPECT_EQ(b.steps[k].from, a.steps[k].from);
      for (const auto& s : kStepStatistics)
        EXPECT_TRUE(at::equal(b.steps[k].*s.member, a.steps[k].*s.member)) << s.key << " of step " << k;
      EXPECT_TRUE(at::equal(b.steps[k].null_sum, a.steps[k].null_sum)) << k;
      EXPECT_TRUE(at::equal(b.steps[k].null_count, a.steps[k].null_count)) << k;
    }
  }
}

TEST(Statistics, PackedSizeFollowsFromTheLists) {
  torch::manual_seed(7);
  CausalTransformer model(tiny_model());
  const Batch batch = random_batch(8);
  const int64_t positions = batch.targets.ge(0).sum().item<int64_t>();
  for (auto g : {Granularity::Block, Granularity::Sublayer}) {
    AnalysisConfig c;
    c.granularity = g;
    const size_t states = g == Granularity::Block ? 3 : 5;  // n_layer = 2
    int64_t per_position = 4;                             // rows, positions, current and target tokens
    for (size_t k = 0; k < states; ++k)
      for (const auto& s : kStateStatistics) per_position += holds(s.presence, k, states) ? 1 : 0;
    per_position += static_cast<int64_t>((states - 1) * std::size(kStepStatistics));
    // Then each step's null-band sums and counts, one per permutation.
    const int64_t totals = static_cast<int64_t>(states - 1) * 2 * c.permutations;
    EXPECT_EQ(packed_numel(model->config(), batch, c), 1 + positions * per_position + totals);
    EXPECT_EQ(pack(analyze_batch(model, batch, 0, c)).numel(), 1 + positions * per_position + totals);
  }
}

TEST(Statistics, JsonHoldsEveryAggregateOfEveryStatistic) {
  torch::manual_seed(9);
  CausalTransformer model(tiny_model());
  model->eval();
  const Batch batch = random_batch(10);
  const DatasetMeta meta = counts_meta();
  AnalysisConfig c;
  c.freq_bins = 3;
  const std::vector<BatchAnalysis> parts{analyze_batch(model, batch, 0, c)};
  const nlohmann::json j = summarize_analysis(model, {batch}, parts, c, &meta);
  const Trajectory& tr = parts[0].trajectory;
  const at::Tensor pos0 = tr.positions.eq(0);
  auto check_summary = [](const nlohmann::json& s, const at::Tensor& t, const std::string& what) {
    ASSERT_TRUE(s.is_object()) << what;
    for (const char* q : {"mean", "std", "median", "q10", "q90"}) EXPECT_TRUE(s.contains(q)) << what << "." << q;
    EXPECT_TRUE(s["ci"].is_array()) << what << ": no interval";
    EXPECT_NEAR(s["mean"].get<double>(), torch_mean(t), 1e-9) << what;
  };
  for (size_t k = 0; k < tr.steps.size(); ++k) {
    const nlohmann::json& js = j["steps"][k];
    for (const auto& s : kStepStatistics) {
      const at::Tensor& t = tr.steps[k].*s.member;
      const std::string key = s.key;
      if (s.aggregates & kMean) {
        EXPECT_NEAR(js[key].get<double>(), torch_mean(t), 1e-9) << key;
        EXPECT_TRUE(js[key + "_ci"].is_array()) << key << ": no interval";
      }
      if (s.aggregates & kSummary) check_summary(js[(s.aggregates & kMean) ? key + "_summary" : key], t, key);
      const bool positional = s.aggregates & kPositional;
      EXPECT_EQ(js["by_position"].contains(key), positional) << key;
      EXPECT_EQ(js["by_frequency"]["current"][0].contains(key), positional) << key;
      EXPECT_EQ(js["by_frequency"]["target"][0].contains(key), positional) << key;
      if (!positional) continue;
      EXPECT_NEAR(js["position_0"][key].get<double>(), torch_mean(t.masked_select(pos0)), 1e-9) << key;
      EXPECT_NEAR(js["positions_after_0"][key].get<double>(), torch_mean(t.masked_select(~pos0)), 1e-9) << key;
      ASSERT_EQ(js["by_position"][key].size(), static_cast<size_t>(T)) << key;
      for (int64_t p = 0; p < T; ++p)
        EXPECT_NEAR(js["by_position"][key][p].get<double>(), torch_mean(t.masked_select(tr.positions.eq(p))), 1e-9)
            << key << " at position " << p;
    }
    for (const auto& s : kDerivedStepStatistics) {
      const at::Tensor t = s.compute(tr.steps[k]);
      if (s.aggregates & kMean) {
        EXPECT_NEAR(js[s.key].get<double>(), torch_mean(t), 1e-9) << s.key;
      }
      if (s.aggregates & kSummary) check_summary(js[s.key], t, s.key);
    }
  }
  for (size_t k = 0; k < tr.states.size(); ++k) {
    const nlohmann::json& js = j["states"][k];
    for (const auto& s : kStateStatistics) {
      const at::Tensor& t = tr.states[k].*s.member;
      const std::string key = s.key;
      if (!t.defined()) {
        if (s.aggregates & kSummary) {
          EXPECT_TRUE(js[key].is_null()) << key << " of state " << k;
        }
        continue;
      }
      if (s.aggregates & kMean) {
        EXPECT_NEAR(js[key].get<double>(), torch_mean(t), 1e-9) << key;
      }
      if (s.aggregates & kSummary) check_summary(js[(s.aggregates & kMean) ? key + "_summary" : key], t, key);
      const bool positional = s.aggregates & kPositional;
      EXPECT_EQ(js.contains(key + "_by_position"), positional) << key;
      EXPECT_EQ(js["norm_by_frequency"]["current"][0].contains(key), positional) << key;
      for (int64_t p = 0; positional && p < T; ++p)
        EXPECT_NEAR(js[key + "_by_position"][p].get<double>(), torch_mean(t.masked_select(tr.positions.eq(p))), 1e-9)
            << key << " at position " << p;
      const bool spearman = s.aggregates & kFreqSpearman;
      EXPECT_EQ(js.contains(key + "_freq_spearman"), spearman) << key;
      if (spearman) {
        EXPECT_TRUE(js[key + "_freq_spearman"]["current"].is_number()) << key;
        EXPECT_TRUE(js[key + "_freq_spearman"]["target"].is_number()) << key;
      }
    }
  }
}

TEST(Statistics, EveryKeyIsDocumentedInTheSchema) {
  std::ifstream in(std::string(METALM_SOURCE_DIR) + "/docs/analysis-schema.md");
  ASSERT_TRUE(in) << "docs/analysis-schema.md";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  for (const auto& s : kStateStatistics) EXPECT_NE(doc.find("`" + std::string(s.key) + "`"), std::string::npos) << s.key;
  for (const auto& s : kStepStatistics) EXPECT_NE(doc.find("`" + std::string(s.key) + "`"), std::string::npos) << s.key;
  for (const auto& s : kDerivedStepStatistics)
    EXPECT_NE(doc.find("`" + std::string(s.key) + "`"), std::string::npos) << s.key;
}

}  // namespace
}  // namespace metalm
