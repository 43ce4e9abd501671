#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>

#include "metalm/analysis/summary.hpp"

namespace metalm {
namespace {

TEST(Summary, MatchesNumpyDefinitions) {
  // Reference values from np.mean, np.std, np.median, np.quantile(.., [0.1, 0.9]).
  const Summary s = summarize(std::vector<double>{5, 1, 4, 2, 3, 10});
  EXPECT_DOUBLE_EQ(s.mean, 25.0 / 6.0);
  EXPECT_NEAR(s.std, 2.91070819942883, 1e-12);
  EXPECT_DOUBLE_EQ(s.median, 3.5);
  EXPECT_DOUBLE_EQ(s.q10, 1.5);
  EXPECT_DOUBLE_EQ(s.q90, 7.5);
  EXPECT_EQ(s.count, 6);
}

TEST(Summary, IgnoresNonFiniteValuesAndIsNaNWhenEmpty) {
  EXPECT_DOUBLE_EQ(summarize(std::vector<double>{1, NAN, 3}).mean, 2.0);
  EXPECT_TRUE(std::isnan(summarize(std::vector<double>{}).mean));
  EXPECT_TRUE(to_json(summarize(std::vector<double>{}))["mean"].is_null());
}

TEST(Spearman, HandlesTiesWithAverageRanks) {
  // scipy.stats.spearmanr([1, 2, 2, 3, 5], [2, 1, 4, 4, 9]).correlation
  EXPECT_NEAR(spearman({1, 2, 2, 3, 5}, {2, 1, 4, 4, 9}), 0.7631578947368421, 1e-12);
  EXPECT_NEAR(spearman({1, 2, 3}, {30, 20, 10}), -1.0, 1e-12);
  EXPECT_TRUE(std::isnan(spearman({1, 1, 1}, {1, 2, 3})));
  const std::vector<double> r = average_ranks({10, 20, 10, 5});
  EXPECT_EQ(r, (std::vector<double>{2.5, 4, 2.5, 1}));
}

TEST(FrequencyBins, AreLogSpacedAndCoverEveryCount) {
  // max count 999: edges at 10^(3 i / 3) - 1 = 0, 9, 99, 999.
  FrequencyBins bins({0, 1, 8, 10, 50, 120, 999}, 3);
  EXPECT_EQ(bins.bin_of_token(0), 0);
  EXPECT_EQ(bins.bin_of_token(1), 0);
  EXPECT_EQ(bins.bin_of_token(2), 0);
  EXPECT_EQ(bins.bin_of_token(3), 1);
  EXPECT_EQ(bins.bin_of_token(4), 1);
  EXPECT_EQ(bins.bin_of_token(5), 2);
  EXPECT_EQ(bins.bin_of_token(6), 2);
  EXPECT_EQ(bins.bin_of_token(99), 0);  // unknown ids count as unseen
  EXPECT_NEAR(bins.upper(0), 9.0, 1e-9);
  EXPECT_NEAR(bins.upper(2), 999.0, 1e-9);
}

TEST(GroupMeans, AveragesPerGroupAndLeavesEmptyGroupsNaN) {
  const at::Tensor v = at::tensor({1.0, 2.0, 3.0, 5.0});
  const at::Tensor g = at::tensor({0, 0, 2, 2}, at::TensorOptions(at::kLong));
  const std::vector<double> m = group_means(v, g, 3);
  EXPECT_DOUBLE_EQ(m[0], 1.5);
  EXPECT_TRUE(std::isnan(m[1]));
  EXPECT_DOUBLE_EQ(m[2], 4.0);
  EXPECT_EQ(group_counts(g, 3), (std::vector<int64_t>{2, 0, 2}));
}

// A NaN (a 0/0 statistic) is left out of its group's mean, not propagated:
// the group keeps the mean of its finite values, and a group of NaNs only is NaN.
TEST(GroupMeans, LeaveNonFiniteValuesOutOfTheirGroup) {
  const at::Tensor v = at::tensor({1.0, NAN, 3.0, NAN});
  const at::Tensor g = at::tensor({0, 0, 0, 1}, at::TensorOptions(at::kLong));
  const std::vector<double> m = group_means(v, g, 2);
  EXPECT_DOUBLE_EQ(m[0], 2.0);
  EXPECT_TRUE(std::isnan(m[1]));
  EXPECT_EQ(group_counts(g, 2), (std::vector<int64_t>{3, 1}));  // counts are of positions, NaN or not
}

// A count of 1 is seen: with enough bins it leaves bin 0 (n ln 2 / ln(M+1) =
// 8 * 0.693 / 4.615 = 1.2 -> bin 1 for M = 100), which only unseen tokens and
// counts below the first edge share.
TEST(FrequencyBins, ACountOfOneIsNotUnseen) {
  FrequencyBins bins({0, 1, 100}, 8);
  EXPECT_EQ(bins.bin_of_token(0), 0);
  EXPECT_EQ(bins.bin_of_token(1), 1);
  EXPECT_EQ(bins.bin_of_token(2), 7);
  EXPECT_NEAR(bins.lower(1), std::pow(101.0, 1.0 / 8.0) - 1.0, 1e-12);
}

}  // namespace
}  // namespace metalm
