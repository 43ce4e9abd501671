// Confidence intervals for the means of the analysis (docs/design.md 5.6).
//
// The analysed positions of one sequence share their context, so they are not
// independent draws: an interval from resampling positions would be too
// narrow. ClusterBootstrap resamples whole clusters (sequences) with
// replacement and reads the percentile interval off the resampled means.
// Every draw is counter-based, cluster j of resample r being
//
//   mix(seed, 0x424F4F54, r, j) mod C     (mix: metalm/core/hash.hpp, C clusters;
//                                           0x424F4F54 is "BOOT", apart from other draws)
//
// so an implementation outside metalm reproduces the interval exactly, and
// every statistic of one analysis is resampled with the same draws (the
// interval of a difference is that of the paired difference).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace metalm {

inline constexpr uint64_t kBootstrapStream = 0x424F4F54;  // "BOOT"

struct Interval {
  double lo = std::numeric_limits<double>::quiet_NaN();
  double hi = std::numeric_limits<double>::quiet_NaN();
};

class ClusterBootstrap {
 public:
  // cluster: [N] integer id of each position's cluster (any ids; equal ids
  // are one cluster). resamples >= 1.
  ClusterBootstrap(const at::Tensor& cluster, int64_t resamples, uint64_t seed);

  // The mean of the finite entries of `values` [N] (positions in the order of
  // `cluster`) in each resample: the sum over the drawn clusters' finite
  // values over their number. A resample that drew no finite value is NaN.
  std::vector<double> resampled_means(const at::Tensor& values) const;

  // The central `level` percentile interval of the resampled means (their
  // (1 − level)/2 and (1 + level)/2 quantiles, numpy's linear interpolation),
  // over the finite resampled means; NaN when there are none.
  Interval mean_interval(const at::Tensor& values, double level = 0.95) const;

  int64_t resamples() const { return resamples_; }
  uint64_t seed() const { return seed_; }
  int64_t clusters() const { return clusters_; }

 private:
  at::Tensor index_;    // [N] int64: each position's cluster, 0 … C−1
  at::Tensor weights_;  // [R, C] double: how often resample r drew cluster c
  int64_t resamples_, clusters_;
  uint64_t seed_;
};

// The q-quantile (0 <= q <= 1) of `values`, interpolating linearly at
// position q (n − 1) of the sorted finite values (numpy's default); NaN
// when no value is finite.
double quantile(std::vector<double> values, double q);

}  // namespace metalm
