#include "metalm/analysis/inference.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <tuple>

#include "metalm/core/error.hpp"
#include "metalm/core/hash.hpp"

namespace metalm {

ClusterBootstrap::ClusterBootstrap(const at::Tensor& cluster, int64_t resamples, uint64_t seed)
    : resamples_(resamples), seed_(seed) {
  if (resamples < 1) throw ConfigError("bootstrap: the number of resamples must be at least 1, got " + std::to_string(resamples));
  if (cluster.dim() != 1) throw ShapeError("bootstrap: cluster ids must be [N]");
  at::Tensor ids = cluster.to(at::kLong).cpu();
  at::Tensor unique, inverse;
  std::tie(unique, inverse, std::ignore) = at::_unique2(ids, /*sorted=*/true, /*return_inverse=*/true);
  index_ = inverse.reshape({-1});
  clusters_ = unique.numel();
  weights_ = at::zeros({resamples_, clusters_}, at::TensorOptions(at::kDouble));
  if (clusters_ == 0) return;
  double* w = weights_.data_ptr<double>();
  const auto c = static_cast<uint64_t>(clusters_);
  for (int64_t r = 0; r < resamples_; ++r)
    for (int64_t j = 0; j < clusters_; ++j) w[r * clusters_ + static_cast<int64_t>(mix(seed_, kBootstrapStream, r, j) % c)] += 1.0;
}

std::vector<double> ClusterBootstrap::resampled_means(const at::Tensor& values) const {
  if (values.dim() != 1 || values.size(0) != index_.size(0))
    throw ShapeError("bootstrap: expected " + std::to_string(index_.size(0)) + " values, got a tensor of " +
                     std::to_string(values.numel()));
  at::Tensor v = values.detach().to(at::kDouble).cpu();
  const at::Tensor finite = v.isfinite();
  // Per-cluster sums and counts of the finite values, then every resample's
  // totals as one product with the multiplicities.
  const at::Tensor sums = at::zeros({clusters_}, v.options()).index_add_(0, index_, at::where(finite, v, at::zeros_like(v)));
  const at::Tensor counts = at::zeros({clusters_}, v.options()).index_add_(0, index_, finite.to(at::kDouble));
  const at::Tensor means = at::mv(weights_, sums) / at::mv(weights_, counts);  // 0/0: NaN
  const double* m = means.data_ptr<double>();
  return std::vector<double>(m, m + means.numel());
}

Interval ClusterBootstrap::mean_interval(const at::Tensor& values, double level) const {
  if (!(level > 0 && level < 1)) throw ConfigError("bootstrap: the interval's level must lie in (0, 1)");
  const std::vector<double> means = resampled_means(values);
  return {quantile(means, (1 - level) / 2), quantile(means, (1 + level) / 2)};
}

double quantile(std::vector<double> values, double q) {
  values.erase(std::remove_if(values.begin(), values.end(), [](double x) { return !std::isfinite(x); }), values.end());
  if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
  std::sort(values.begin(), values.end());
  const double p = std::clamp(q, 0.0, 1.0) * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(p));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (p - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

}  // namespace metalm
