// Reference algorithms for in-context linear regression, in float64, each
// with hyper-parameters tuned on held-out tasks (docs/design.md section 8.2).
//
// Every reference maps a task's context to a linear predictor Ŵ [d_y, d_x]
// and predicts ŷ = Ŵ x_q, so its sensitivity ∂ŷ/∂x_q is Ŵ itself.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "metalm/icl/task.hpp"

namespace metalm::icl {

// One layer of the linear-attention construction of docs/design.md 8.3: a
// GD step of size η on the context's residuals, preconditioned by P, and
// GD++'s correction x ← (I − γ Σ̂) x of every input.
struct ConstructedStep {
  double eta = 0, gamma = 0;
  at::Tensor preconditioner;  // P [d_x, d_x], float64
};

struct Bounds {
  double lo, hi;  // a hyper-parameter is searched on a log scale in [lo, hi]
};

class Reference {
 public:
  virtual ~Reference() = default;
  virtual std::string name() const = 0;
  // One name per hyper-parameter ("eta", "gamma", "lambda"), in order.
  virtual std::vector<std::string> param_names() const = 0;
  virtual std::vector<Bounds> bounds() const = 0;
  // The order in which tune() visits the hyper-parameters in each round
  // (default: as listed).
  virtual std::vector<size_t> tuning_order() const {
    std::vector<size_t> order(param_names().size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    return order;
  }
  // The predictors Ŵ [B, d_y, d_x] of every task of `b` under `params`.
  virtual at::Tensor predictor(const TaskBatch& b, const std::vector<double>& params) const = 0;
  // For a one-step reference Ŵ = η C P (one GD step: P = I), P [d_x, d_x];
  // undefined for the others.
  virtual at::Tensor one_step_preconditioner(int64_t d_x) const {
    (void)d_x;
    return {};
  }
  // The layers of linear attention that compute this reference exactly under
  // `params`, one per step; empty for a reference no such stack computes
  // (ridge, least squares).
  virtual std::vector<ConstructedStep> construction(const std::vector<double>& params, int64_t d_x) const {
    (void)params, (void)d_x;
    return {};
  }
};

// ŷ = Ŵ x_q: [B, d_y].
at::Tensor predict(const Reference& r, const TaskBatch& b, const std::vector<double>& params);

// K steps of gradient descent from W = 0 on L(W) = 1/(2N) Σ ‖W x_i − y_i‖²,
// step k with its own size η_k.
std::unique_ptr<Reference> gradient_descent(int64_t steps);
// GD++ (von Oswald et al. 2023): K steps, each a GD step of size η_k on the
// current inputs together with the curvature correction x ← (I − γ_k Σ̂) x of
// every input (context and query), Σ̂ = (1/N) Σ x_i x_iᵀ of the current inputs.
std::unique_ptr<Reference> gd_plus_plus(int64_t steps);
// One preconditioned GD step from 0: Ŵ = η ((1/N) Σ y_i x_iᵀ) P, with a fixed
// preconditioner P [d_x, d_x] (named `name`).
std::unique_ptr<Reference> preconditioned_step(std::string name, at::Tensor preconditioner);
// Ridge regression Ŵ = C (Σ̂ + λ I)⁻¹, C = (1/N) Σ y_i x_iᵀ.
std::unique_ptr<Reference> ridge();
// Least squares, the minimum-norm solution Ŵ = C Σ̂⁺ when N < d_x.
std::unique_ptr<Reference> least_squares();

// The one-step preconditioner that minimises the expected loss for W ~ N(0, I):
// ((1 + 1/N) Σ + (tr Σ + σ²)/N · I)⁻¹ (docs/design.md 8.2).
at::Tensor optimal_preconditioner(const TaskOptions& o);

// A reference with its hyper-parameters tuned: each searched on a log grid,
// then refined by golden-section search, coordinate by coordinate.
struct Tuned {
  std::shared_ptr<const Reference> reference;
  std::vector<double> params;
  double tuning_loss = 0;  // prediction_loss on the tuning tasks
};
Tuned tune(std::shared_ptr<const Reference> r, const TaskBatch& tuning);

// The references compared with a model of `layers` layers: gd1, gd<L> and
// gdpp<L> (when L > 1), precond_opt, precond_inv_sigma, ridge, ols.
std::vector<std::shared_ptr<const Reference>> standard_references(const TaskOptions& o, int64_t layers);

}  // namespace metalm::icl
