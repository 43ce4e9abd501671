// The reference algorithms in their predictor form Ŵ (docs/design.md 8.2).
// With C = (1/N) Σ y_i x_iᵀ = YᵀX/N and Σ̂ = XᵀX/N (batched, [B, ·, ·]):
//   one GD step from 0:       Ŵ = η C
//   GD step k:                Ŵ ← Ŵ + η_k (C − Ŵ Σ̂)         (−∇L(Ŵ) = C − Ŵ Σ̂)
//   preconditioned step:      Ŵ = η C P
//   ridge:                    Ŵ = C (Σ̂ + λ I)⁻¹
#include "metalm/icl/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "metalm/core/error.hpp"

namespace metalm::icl {
namespace {

at::Tensor context_correlation(const TaskBatch& b) {  // C: [B, d_y, d_x]
  return at::matmul(b.y.transpose(1, 2), b.x) / static_cast<double>(b.x.size(1));
}
at::Tensor context_covariance(const at::Tensor& x) {  // Σ̂ of x [B, N, d_x]: [B, d_x, d_x]
  return at::matmul(x.transpose(1, 2), x) / static_cast<double>(x.size(1));
}
at::Tensor batched_eye(const TaskBatch& b) {
  return at::eye(b.x.size(2), b.x.options()).expand({b.size(), b.x.size(2), b.x.size(2)});
}

void check_params(const Reference& r, const std::vector<double>& params) {
  if (params.size() != r.param_names().size())
    throw ConfigError(r.name() + ": expected " + std::to_string(r.param_names().size()) + " hyper-parameters, got " +
                      std::to_string(params.size()));
}

class GradientDescent final : public Reference {
 public:
  explicit GradientDescent(int64_t steps) : steps_(steps) {}
  std::string name() const override { return "gd" + std::to_string(steps_); }
  std::vector<std::string> param_names() const override {
    std::vector<std::string> out;
    for (int64_t k = 0; k < steps_; ++k) out.push_back("eta_" + std::to_string(k));
    return out;
  }
  std::vector<Bounds> bounds() const override { return std::vector<Bounds>(steps_, {1e-3, 10.0}); }
  at::Tensor predictor(const TaskBatch& b, const std::vector<double>& p) const override {
    check_params(*this, p);
    const at::Tensor c = context_correlation(b), s = context_covariance(b.x);
    at::Tensor w = at::zeros_like(c);
    for (int64_t k = 0; k < steps_; ++k) w = w + p[k] * (c - at::matmul(w, s));
    return w;
  }
  at::Tensor one_step_preconditioner(int64_t d_x) const override {
    return steps_ == 1 ? at::eye(d_x, at::kDouble) : at::Tensor();
  }
  std::vector<ConstructedStep> construction(const std::vector<double>& p, int64_t d_x) const override {
    check_params(*this, p);
    std::vector<ConstructedStep> out;
    for (int64_t k = 0; k < steps_; ++k) out.push_back({p[k], 0.0, at::eye(d_x, at::kDouble)});
    return out;
  }

 private:
  int64_t steps_;
};

class GdPlusPlus final : public Reference {
 public:
  explicit GdPlusPlus(int64_t steps) : steps_(steps) {}
  std::string name() const override { return "gdpp" + std::to_string(steps_); }
  std::vector<std::string> param_names() const override {
    std::vector<std::string> out;
    for (int64_t k = 0; k < steps_; ++k) {
      out.push_back("eta_" + std::to_string(k));
      out.push_back("gamma_" + std::to_string(k));
    }
    return out;
  }
  std::vector<Bounds> bounds() const override {
    std::vector<Bounds> out;
    for (int64_t k = 0; k < steps_; ++k) {
      out.push_back({1e-3, 10.0});
      out.push_back({1e-5, 2.0});
    }
    return out;
  }
  // Every step size first: a correction γ_k only matters once a later step
  // has a size, and tuned before it would be tuned against nothing.
  std::vector<size_t> tuning_order() const override {
    std::vector<size_t> order;
    for (int64_t k = 0; k < steps_; ++k) order.push_back(static_cast<size_t>(2 * k));
    for (int64_t k = 0; k < steps_; ++k) order.push_back(static_cast<size_t>(2 * k + 1));
    return order;
  }
  // The token form: context residuals r_i (initially y_i) and inputs x_i
  // change together in every step; the query's input is A x_q, its residual
  // −Ŵ x_q. With every γ = 0 this is GD (docs/design.md 8.2).
  at::Tensor predictor(const TaskBatch& b, const std::vector<double>& p) const override {
    check_params(*this, p);
    at::Tensor x = b.x, r = b.y, a = batched_eye(b);
    at::Tensor w = at::zeros_like(context_correlation(b));
    const double n = static_cast<double>(b.x.size(1));
    for (int64_t k = 0; k < steps_; ++k) {
      const double eta = p[2 * k], gamma = p[2 * k + 1];
      const at::Tensor c = at::matmul(r.transpose(1, 2), x) / n;  // [B, d_y, d_x]
      const at::Tensor m = batched_eye(b) - gamma * context_covariance(x);
      w = w + eta * at::matmul(c, a);
      r = r - eta * at::matmul(x, c.transpose(1, 2));  // r_i − η C x_i
      x = at::matmul(x, m);                            // x_i ← M x_i (M symmetric)
      a = at::matmul(m, a);
    }
    return w;
  }
  std::vector<ConstructedStep> construction(const std::vector<double>& p, int64_t d_x) const override {
    check_params(*this, p);
    std::vector<ConstructedStep> out;
    for (int64_t k = 0; k < steps_; ++k) out.push_back({p[2 * k], p[2 * k + 1], at::eye(d_x, at::kDouble)});
    return out;
  }

 private:
  int64_t steps_;
};

class PreconditionedStep final : public Reference {
 public:
  PreconditionedStep(std::string name, at::Tensor p) : name_(std::move(name)), p_(std::move(p)) {}
  std::string name() const override { return name_; }
  std::vector<std::string> param_names() const override { return {"eta"}; }
  std::vector<Bounds> bounds() const override { return {{1e-3, 10.0}}; }
  at::Tensor predictor(const TaskBatch& b, const std::vector<double>& p) const override {
    check_params(*this, p);
    if (p_.size(0) != b.x.size(2)) throw ShapeError(name_ + ": the preconditioner is not [d_x, d_x]");
    return p[0] * at::matmul(context_correlation(b), p_);
  }
  at::Tensor one_step_preconditioner(int64_t) const override { return p_; }
  std::vector<ConstructedStep> construction(const std::vector<double>& p, int64_t) const override {
    check_params(*this, p);
    return {{p[0], 0.0, p_}};
  }

 private:
  std::string name_;
  at::Tensor p_;
};

class Ridge final : public Reference {
 public:
  std::string name() const override { return "ridge"; }
  std::vector<std::string> param_names() const override { return {"lambda"}; }
  std::vector<Bounds> bounds() const override { return {{1e-6, 1e3}}; }
  at::Tensor predictor(const TaskBatch& b, const std::vector<double>& p) const override {
    check_params(*this, p);
    const at::Tensor a = context_covariance(b.x) + p[0] * batched_eye(b);
    // Ŵᵀ = (Σ̂ + λI)⁻¹ Cᵀ, both sides symmetric.
    return at::linalg_solve(a, context_correlation(b).transpose(1, 2)).transpose(1, 2);
  }
};

class LeastSquares final : public Reference {
 public:
  std::string name() const override { return "ols"; }
  std::vector<std::string> param_names() const override { return {}; }
  std::vector<Bounds> bounds() const override { return {}; }
  at::Tensor predictor(const TaskBatch& b, const std::vector<double>& p) const override {
    check_params(*this, p);
    return at::matmul(context_correlation(b), at::linalg_pinv(context_covariance(b.x)));
  }
};

double loss_at(const Reference& r, const TaskBatch& b, const std::vector<double>& p) {
  const double loss = prediction_loss(predict(r, b, p), b);
  return std::isfinite(loss) ? loss : std::numeric_limits<double>::infinity();
}

// Minimises the loss over coordinate i on a log scale: the best of a grid,
// then golden-section search between its neighbours.
void tune_coordinate(const Reference& r, const TaskBatch& b, std::vector<double>& p, size_t i, Bounds bounds) {
  constexpr int kGrid = 25;
  const double lo = std::log(bounds.lo), hi = std::log(bounds.hi), step = (hi - lo) / (kGrid - 1);
  auto f = [&](double log_v) {
    std::vector<double> q = p;
    q[i] = std::exp(log_v);
    return loss_at(r, b, q);
  };
  const double current = loss_at(r, b, p) * (1 - 1e-12);
  int best = 0;
  double best_loss = std::numeric_limits<double>::infinity();
  for (int g = 0; g < kGrid; ++g) {
    const double l = f(lo + g * step);
    if (l < best_loss) best_loss = l, best = g;
  }
  double a = lo + std::max(0, best - 1) * step, c = lo + std::min(kGrid - 1, best + 1) * step;
  const double phi = (std::sqrt(5.0) - 1) / 2;
  double x1 = c - phi * (c - a), x2 = a + phi * (c - a), f1 = f(x1), f2 = f(x2);
  for (int it = 0; it < 40; ++it) {
    if (f1 < f2) {
      c = x2, x2 = x1, f2 = f1, x1 = c - phi * (c - a), f1 = f(x1);
    } else {
      a = x1, x1 = x2, f1 = f2, x2 = a + phi * (c - a), f2 = f(x2);
    }
  }
  const double refined = (a + c) / 2, refined_loss = f(refined);
  const double candidate = refined_loss <= best_loss ? refined : lo + best * step;
  // Only a strictly lower loss moves the coordinate: where it does not
  // matter yet (GD++'s γ_k before a later step uses its inputs) it keeps its
  // start, instead of a value that blocks the coordinates tuned after it.
  if (std::min(refined_loss, best_loss) < current) p[i] = std::exp(candidate);
}

}  // namespace

at::Tensor predict(const Reference& r, const TaskBatch& b, const std::vector<double>& params) {
  return at::matmul(r.predictor(b, params), b.x_q.unsqueeze(2)).squeeze(2);  // [B, d_y]
}

std::unique_ptr<Reference> gradient_descent(int64_t steps) {
  if (steps < 1) throw ConfigError("gd: needs at least one step");
  return std::make_unique<GradientDescent>(steps);
}
std::unique_ptr<Reference> gd_plus_plus(int64_t steps) {
  if (steps < 1) throw ConfigError("gdpp: needs at least one step");
  return std::make_unique<GdPlusPlus>(steps);
}
std::unique_ptr<Reference> preconditioned_step(std::string name, at::Tensor preconditioner) {
  return std::make_unique<PreconditionedStep>(std::move(name), preconditioner.to(at::kDouble));
}
std::unique_ptr<Reference> ridge() { return std::make_unique<Ridge>(); }
std::unique_ptr<Reference> least_squares() { return std::make_unique<LeastSquares>(); }

at::Tensor optimal_preconditioner(const TaskOptions& o) {
  const at::Tensor lambda = covariance_eigenvalues(o);
  const double n = static_cast<double>(o.n);
  const double shift = (lambda.sum().item<double>() + o.noise * o.noise) / n;
  return at::diag(1.0 / ((1 + 1 / n) * lambda + shift));
}

Tuned tune(std::shared_ptr<const Reference> r, const TaskBatch& tuning) {
  const std::vector<Bounds> bounds = r->bounds();
  Tuned t;
  for (const Bounds& b : bounds) t.params.push_back(b.lo);
  // One coordinate alone is tuned exactly once; coupled ones (K-step GD,
  // GD++) go round until the loss stops improving.
  const int rounds = bounds.size() > 1 ? 4 : 1;
  for (int round = 0; round < rounds; ++round)
    for (size_t i : r->tuning_order()) tune_coordinate(*r, tuning, t.params, i, bounds.at(i));
  t.tuning_loss = loss_at(*r, tuning, t.params);
  t.reference = std::move(r);
  return t;
}

std::vector<std::shared_ptr<const Reference>> standard_references(const TaskOptions& o, int64_t layers) {
  std::vector<std::shared_ptr<const Reference>> out;
  out.push_back(gradient_descent(1));
  if (layers > 1) {
    out.push_back(gradient_descent(layers));
    out.push_back(gd_plus_plus(layers));
  }
  out.push_back(preconditioned_step("precond_opt", optimal_preconditioner(o)));
  out.push_back(preconditioned_step("precond_inv_sigma", at::diag(1.0 / covariance_eigenvalues(o))));
  out.push_back(ridge());
  out.push_back(least_squares());
  return out;
}

}  // namespace metalm::icl
