#include "metalm/icl/task.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <string>

#include "metalm/core/error.hpp"
#include "metalm/core/hash.hpp"

namespace metalm::icl {
namespace {
const auto kF64 = at::TensorOptions(at::kDouble);
}  // namespace

void validate(const TaskOptions& o) {
  auto at_least_1 = [](const char* key, int64_t v) {
    if (v < 1) throw ConfigError(std::string("task.") + key + ": must be at least 1, got " + std::to_string(v));
  };
  at_least_1("d_x", o.d_x);
  at_least_1("d_y", o.d_y);
  at_least_1("n", o.n);
  // Far above any useful size; keeps [B, N, D] products from overflowing.
  if (o.d_x > 4096 || o.d_y > 4096 || o.n > (1 << 20))
    throw ConfigError("task: d_x and d_y must be at most 4096 and n at most 1048576");
  if (!std::isfinite(o.noise) || o.noise < 0) throw ConfigError("task.noise: must be a finite number >= 0");
  if (!std::isfinite(o.kappa) || o.kappa < 1 || o.kappa > 1e6)
    throw ConfigError("task.kappa: must be a number from 1 to 1e6 (the condition number of the input covariance)");
}

at::Tensor covariance_eigenvalues(const TaskOptions& o) {
  validate(o);
  // λ_i = κ^{i/(d−1)}, then scaled so that Σ λ_i = d_x.
  const at::Tensor exponents = o.d_x > 1 ? at::arange(o.d_x, kF64) / static_cast<double>(o.d_x - 1) : at::zeros({1}, kF64);
  const at::Tensor lambda = at::pow(o.kappa, exponents);
  return lambda * (static_cast<double>(o.d_x) / lambda.sum());
}

at::Tensor covariance(const TaskOptions& o) { return at::diag(covariance_eigenvalues(o)); }

TaskBatch sample_tasks(const TaskOptions& o, uint64_t seed, Stream stream, int64_t index, int64_t batch) {
  validate(o);
  if (batch < 1) throw ConfigError("icl: a batch needs at least one task, got " + std::to_string(batch));
  at::Generator gen = at::detail::createCPUGenerator(mix(seed, static_cast<uint64_t>(stream), index));
  const at::Tensor scale = covariance_eigenvalues(o).sqrt();                                   // [d_x]
  const at::Tensor w = at::normal(0.0, 1.0, {batch, o.d_y, o.d_x}, gen, kF64);                  // [B, d_y, d_x]
  const at::Tensor x_all = at::normal(0.0, 1.0, {batch, o.n + 1, o.d_x}, gen, kF64) * scale;  // [B, N+1, d_x]
  const at::Tensor eps = at::normal(0.0, 1.0, {batch, o.n + 1, o.d_y}, gen, kF64) * o.noise;
  const at::Tensor y_all = at::matmul(x_all, w.transpose(1, 2)) + eps;                         // [B, N+1, d_y]
  TaskBatch b;
  b.x = x_all.narrow(1, 0, o.n);
  b.y = y_all.narrow(1, 0, o.n);
  b.x_q = x_all.select(1, o.n);
  b.y_q = y_all.select(1, o.n);
  b.w = w;
  return b;
}

at::Tensor tokens(const TaskBatch& b, at::ScalarType dtype) {
  const at::Tensor query = at::cat({b.x_q, at::zeros_like(b.y_q)}, 1).unsqueeze(1);  // [B, 1, D]
  return at::cat({at::cat({b.x, b.y}, 2), query}, 1).to(dtype);                      // [B, N+1, D]
}

double prediction_loss(const at::Tensor& y_hat, const TaskBatch& b) {
  if (y_hat.sizes() != b.y_q.sizes()) throw ShapeError("icl: predictions must be [B, d_y] like the query targets");
  return (y_hat.to(at::kDouble) - b.y_q).pow(2).mean().item<double>();
}

}  // namespace metalm::icl
