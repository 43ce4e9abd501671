// Aggregation helpers: distribution summaries, Spearman rank correlation and
// log-spaced token-frequency bins.
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace metalm {

// mean, std (population), median, q10, q90 of the finite values; NaN where
// there are none. Quantiles interpolate linearly between order statistics
// (numpy's default).
struct Summary {
  double mean = 0, std = 0, median = 0, q10 = 0, q90 = 0;
  int64_t count = 0;
};
Summary summarize(const std::vector<double>& values);
Summary summarize(const at::Tensor& values);  // any shape, any float dtype
// {"mean","std","median","q10","q90"}; NaN becomes null.
nlohmann::json to_json(const Summary& s);

std::vector<double> to_vector(const at::Tensor& values);  // flattened, as double

// Ranks 1..n with ties given their average rank.
std::vector<double> average_ranks(const std::vector<double>& values);
// Pearson correlation of the average ranks; NaN when a side is constant or
// there are fewer than 2 values.
double spearman(const std::vector<double>& a, const std::vector<double>& b);

// Log-spaced bins over training-corpus counts: bin i holds counts c with
// (max+1)^(i/n) - 1 <= c < (max+1)^((i+1)/n) - 1 (the last bin includes max),
// so unseen tokens fall in bin 0.
class FrequencyBins {
 public:
  FrequencyBins(std::vector<int64_t> counts, int64_t bins);
  int64_t bins() const { return bins_; }
  int64_t bin_of_count(int64_t count) const;
  int64_t bin_of_token(int64_t token) const;  // tokens out of range count as 0
  int64_t count_of(int64_t token) const;
  double lower(int64_t bin) const;  // count range covered by the bin
  double upper(int64_t bin) const;
  // [N] int64 token ids -> [N] int64 bins.
  at::Tensor bin_tokens(const at::Tensor& tokens) const;
  const std::vector<int64_t>& counts() const { return counts_; }

 private:
  std::vector<int64_t> counts_;
  int64_t bins_;
  double log_max_;  // log(max count + 1)
};

// Mean of `values` in each group 0..groups-1 (NaN where a group is empty),
// and the group sizes.
std::vector<double> group_means(const at::Tensor& values, const at::Tensor& group, int64_t groups);
std::vector<int64_t> group_counts(const at::Tensor& group, int64_t groups);

// NaN -> null, so the JSON stays valid for every reader.
nlohmann::json number(double v);
nlohmann::json numbers(const std::vector<double>& v);

}  // namespace metalm
