#include "metalm/analysis/summary.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "metalm/core/error.hpp"

namespace metalm {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double quantile_sorted(const std::vector<double>& sorted, double q) {
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return sorted[lo] + frac * (sorted[hi] - sorted[lo]);
}

}  // namespace

std::vector<double> to_vector(const at::Tensor& values) {
  at::Tensor v = values.detach().reshape({-1}).to(at::kDouble).contiguous();
  const double* p = v.data_ptr<double>();
  return std::vector<double>(p, p + v.numel());
}

Summary summarize(const std::vector<double>& values) {
  std::vector<double> v;
  v.reserve(values.size());
  for (double x : values)
    if (std::isfinite(x)) v.push_back(x);
  Summary s;
  s.count = static_cast<int64_t>(v.size());
  if (v.empty()) {
    s.mean = s.std = s.median = s.q10 = s.q90 = kNaN;
    return s;
  }
  const double n = static_cast<double>(v.size());
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.std = std::sqrt(ss / n);
  std::sort(v.begin(), v.end());
  s.median = quantile_sorted(v, 0.5);
  s.q10 = quantile_sorted(v, 0.1);
  s.q90 = quantile_sorted(v, 0.9);
  return s;
}

Summary summarize(const at::Tensor& values) { return summarize(to_vector(values)); }

nlohmann::json number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

nlohmann::json numbers(const std::vector<double>& v) {
  nlohmann::json out = nlohmann::json::array();
  for (double x : v) out.push_back(number(x));
  return out;
}

nlohmann::json to_json(const Summary& s) {
  return {{"mean", number(s.mean)},
          {"std", number(s.std)},
          {"median", number(s.median)},
          {"q10", number(s.q10)},
          {"q90", number(s.q90)}};
}

std::vector<double> average_ranks(const std::vector<double>& values) {
  const size_t n = values.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return values[a] < values[b]; });
  std::vector<double> ranks(n);
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j + 1 < n && values[order[j + 1]] == values[order[i]]) ++j;
    const double rank = 0.5 * static_cast<double>(i + j) + 1.0;  // average of ranks i+1..j+1
    for (size_t k = i; k <= j; ++k) ranks[order[k]] = rank;
    i = j + 1;
  }
  return ranks;
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) throw ShapeError("spearman: the two samples differ in size");
  if (a.size() < 2) return kNaN;
  const std::vector<double> ra = average_ranks(a), rb = average_ranks(b);
  const double n = static_cast<double>(a.size());
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / n;
  const double mb = std::accumulate(rb.begin(), rb.end(), 0.0) / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb);
    saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  if (saa <= 0 || sbb <= 0) return kNaN;
  return sab / std::sqrt(saa * sbb);
}

// ---- FrequencyBins ------------------------------------------------------------

FrequencyBins::FrequencyBins(std::vector<int64_t> counts, int64_t bins) : counts_(std::move(counts)), bins_(bins) {
  if (bins_ < 1) throw ConfigError("analysis.freq_bins must be at least 1, got " + std::to_string(bins_));
  int64_t max_count = 0;
  for (int64_t c : counts_) max_count = std::max(max_count, c);
  log_max_ = std::log(static_cast<double>(max_count) + 1.0);
}

int64_t FrequencyBins::bin_of_count(int64_t count) const {
  if (log_max_ <= 0 || count <= 0) return 0;
  const double x = std::log(static_cast<double>(count) + 1.0) / log_max_;
  return std::clamp<int64_t>(static_cast<int64_t>(std::floor(x * static_cast<double>(bins_))), 0, bins_ - 1);
}

int64_t FrequencyBins::count_of(int64_t token) const {
  return (token >= 0 && token < static_cast<int64_t>(counts_.size())) ? counts_[static_cast<size_t>(token)] : 0;
}

int64_t FrequencyBins::bin_of_token(int64_t token) const { return bin_of_count(count_of(token)); }

double FrequencyBins::lower(int64_t bin) const {
  return std::exp(log_max_ * static_cast<double>(bin) / static_cast<double>(bins_)) - 1.0;
}

double FrequencyBins::upper(int64_t bin) const {
  return std::exp(log_max_ * static_cast<double>(bin + 1) / static_cast<double>(bins_)) - 1.0;
}

at::Tensor FrequencyBins::bin_tokens(const at::Tensor& tokens) const {
  at::Tensor t = tokens.reshape({-1}).to(at::kLong).contiguous();
  at::Tensor out = at::empty_like(t);
  const int64_t* src = t.data_ptr<int64_t>();
  int64_t* dst = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < t.numel(); ++i) dst[i] = bin_of_token(src[i]);
  return out;
}

// ---- grouping --------------------------------------------------------------------

std::vector<double> group_means(const at::Tensor& values, const at::Tensor& group, int64_t groups) {
  const std::vector<double> v = to_vector(values);
  at::Tensor g = group.reshape({-1}).to(at::kLong).contiguous();
  if (g.numel() != static_cast<int64_t>(v.size())) throw ShapeError("group_means: values and groups differ in size");
  const int64_t* gp = g.data_ptr<int64_t>();
  std::vector<double> sum(static_cast<size_t>(groups), 0.0);
  std::vector<int64_t> n(static_cast<size_t>(groups), 0);
  for (size_t i = 0; i < v.size(); ++i) {
    const int64_t k = gp[i];
    if (k < 0 || k >= groups || !std::isfinite(v[i])) continue;
    sum[static_cast<size_t>(k)] += v[i];
    ++n[static_cast<size_t>(k)];
  }
  for (size_t k = 0; k < sum.size(); ++k) sum[k] = n[k] ? sum[k] / static_cast<double>(n[k]) : kNaN;
  return sum;
}

std::vector<int64_t> group_counts(const at::Tensor& group, int64_t groups) {
  at::Tensor g = group.reshape({-1}).to(at::kLong).contiguous();
  const int64_t* gp = g.data_ptr<int64_t>();
  std::vector<int64_t> n(static_cast<size_t>(groups), 0);
  for (int64_t i = 0; i < g.numel(); ++i)
    if (gp[i] >= 0 && gp[i] < groups) ++n[static_cast<size_t>(gp[i])];
  return n;
}

}  // namespace metalm
