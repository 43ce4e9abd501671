// The reference algorithms against closed forms, in float64
// (docs/design.md 8.2). Expected losses are over W ~ N(0, I), x ~ N(0, Σ):
// the tests draw 2^15 tasks, so a tuned quantity is within about 1 % of its
// expectation; tolerances are 3 %.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "metalm/icl/reference.hpp"
#include "metalm/icl/task.hpp"

namespace metalm::icl {
namespace {

constexpr int64_t kTasks = 1 << 15;

TaskOptions paper_task(double kappa) {
  TaskOptions o;
  o.d_x = 10;
  o.d_y = 1;
  o.n = 10;
  o.kappa = kappa;
  return o;
}

double test_loss(const Tuned& t, const TaskBatch& test) { return prediction_loss(predict(*t.reference, test, t.params), test); }

TEST(IclTask, BatchesArePureFunctionsOfSeedStreamAndIndex) {
  const TaskOptions o = paper_task(10);
  const TaskBatch a = sample_tasks(o, 7, Stream::Train, 3, 8), b = sample_tasks(o, 7, Stream::Train, 3, 8);
  EXPECT_TRUE(at::equal(a.x, b.x) && at::equal(a.y_q, b.y_q));
  EXPECT_FALSE(at::equal(a.x, sample_tasks(o, 7, Stream::Test, 3, 8).x));
  EXPECT_FALSE(at::equal(a.x, sample_tasks(o, 7, Stream::Train, 4, 8).x));
}

TEST(IclTask, CovarianceHasTraceDAndConditionNumberKappa) {
  const at::Tensor lambda = covariance_eigenvalues(paper_task(10));
  EXPECT_NEAR(lambda.sum().item<double>(), 10.0, 1e-12);
  EXPECT_NEAR((lambda.max() / lambda.min()).item<double>(), 10.0, 1e-12);
  // The sampled inputs have that covariance: diag of the mean x xᵀ within 3 %.
  const TaskBatch b = sample_tasks(paper_task(10), 1, Stream::Tune, 0, kTasks);
  const at::Tensor empirical = b.x.reshape({-1, 10}).pow(2).mean(0);
  EXPECT_TRUE(at::allclose(empirical, lambda, 0.03, 0));
}

TEST(IclReference, OneIsotropicGdStepTunesToNOverNPlusDPlusOne) {
  const TaskOptions o = paper_task(1);
  const Tuned t = tune(gradient_descent(1), sample_tasks(o, 1, Stream::Tune, 0, kTasks));
  const double d = 10, n = 10;
  EXPECT_NEAR(t.params[0], n / (n + d + 1), 0.03 * n / (n + d + 1));
  EXPECT_NEAR(test_loss(t, sample_tasks(o, 1, Stream::Test, 0, kTasks)), d * (d + 1) / (n + d + 1),
              0.03 * d * (d + 1) / (n + d + 1));
}

TEST(IclReference, TunedLineSearchFindsTheExactMinimumOfAOneStepLoss) {
  // One step is linear in η: ŷ = η a, so the loss is a parabola with its
  // minimum at Σ⟨a, y⟩ / Σ‖a‖², on the very tasks tuned on.
  const TaskBatch b = sample_tasks(paper_task(3), 2, Stream::Tune, 0, 512);
  const Tuned t = tune(gradient_descent(1), b);
  const at::Tensor a = predict(*gradient_descent(1), b, {1.0});
  EXPECT_NEAR(t.params[0], ((a * b.y_q).sum() / a.pow(2).sum()).item<double>(), 1e-6);
}

// E loss of Ŵ = C Γ (noiseless): tr Σ − 2 tr(Σ Γ Σ) + tr(Γ Σ Γᵀ M), with
// M = (1 + 1/N) Σ² + (tr Σ / N) Σ (docs/design.md 8.2), for diagonal Σ, Γ.
double expected_loss(const at::Tensor& lambda, const at::Tensor& gamma, double n) {
  const at::Tensor m = (1 + 1 / n) * lambda.pow(2) + lambda.sum() / n * lambda;
  return (lambda.sum() - 2 * (lambda.pow(2) * gamma).sum() + (gamma.pow(2) * lambda * m).sum()).item<double>();
}

TEST(IclReference, AnisotropicOneStepLossesMatchTheirClosedForms) {
  const TaskOptions o = paper_task(10);
  const TaskBatch tuning = sample_tasks(o, 3, Stream::Tune, 0, kTasks), test = sample_tasks(o, 3, Stream::Test, 0, kTasks);
  const at::Tensor lambda = covariance_eigenvalues(o);
  const double n = 10, d = 10, tr = 10;
  const at::Tensor p = optimal_preconditioner(o).diagonal();
  // Optimal P: tuned η = 1, loss tr Σ − tr(Σ² P).
  const Tuned opt = tune(preconditioned_step("opt", optimal_preconditioner(o)), tuning);
  const double opt_loss = tr - (lambda.pow(2) * p).sum().item<double>();
  EXPECT_NEAR(opt.params[0], 1.0, 0.03);
  EXPECT_NEAR(test_loss(opt, test), opt_loss, 0.03 * opt_loss);
  EXPECT_NEAR(expected_loss(lambda, p, n), opt_loss, 1e-9);  // the two closed forms agree
  // Σ⁻¹: η = N / (N + d + 1), loss tr Σ (d + 1) / (N + d + 1).
  const Tuned inv = tune(preconditioned_step("inv", at::diag(1 / lambda)), tuning);
  EXPECT_NEAR(inv.params[0], n / (n + d + 1), 0.03 * n / (n + d + 1));
  EXPECT_NEAR(test_loss(inv, test), tr * (d + 1) / (n + d + 1), 0.03 * tr * (d + 1) / (n + d + 1));
  // Plain GD: η = tr Σ² / tr(Σ M).
  const Tuned gd = tune(gradient_descent(1), tuning);
  const at::Tensor m = (1 + 1 / n) * lambda.pow(2) + tr / n * lambda;
  const double eta = (lambda.pow(2).sum() / (lambda * m).sum()).item<double>();
  EXPECT_NEAR(gd.params[0], eta, 0.03 * eta);
  const double gd_loss = expected_loss(lambda, eta * at::ones_like(lambda), n);
  EXPECT_NEAR(test_loss(gd, test), gd_loss, 0.03 * gd_loss);
  // The order the issue predicts, on the same test tasks.
  EXPECT_LT(test_loss(opt, test), test_loss(gd, test));
  EXPECT_LT(test_loss(gd, test), test_loss(inv, test));
}

// Σ̂ = V diag(s) Vᵀ per task: f(Σ̂) = V diag(f(s)) Vᵀ.
at::Tensor matrix_function(const at::Tensor& sigma_hat, const std::function<at::Tensor(const at::Tensor&)>& f) {
  const auto [s, v] = at::linalg_eigh(sigma_hat);
  return at::matmul(v * f(s).unsqueeze(1), v.transpose(1, 2));
}

TEST(IclReference, KStepsOfGdMatchTheClosedForm) {
  // Noiseless: Ŵ_K = W (I − (I − η Σ̂)^K).
  const TaskBatch b = sample_tasks(paper_task(4), 5, Stream::Tune, 0, 64);
  const double eta = 0.3;
  const at::Tensor sigma_hat = at::matmul(b.x.transpose(1, 2), b.x) / 10.0;
  const at::Tensor closed = at::matmul(b.w, matrix_function(sigma_hat, [&](const at::Tensor& s) {
                                         return 1 - at::pow(1 - eta * s, 3);
                                       }));
  EXPECT_TRUE(at::allclose(gradient_descent(3)->predictor(b, {eta, eta, eta}), closed, 1e-10, 1e-10));
}

TEST(IclReference, GdPlusPlusWithoutCorrectionIsGd) {
  const TaskBatch b = sample_tasks(paper_task(4), 6, Stream::Tune, 0, 64);
  EXPECT_TRUE(at::allclose(gd_plus_plus(3)->predictor(b, {0.2, 0, 0.3, 0, 0.1, 0}),
                           gradient_descent(3)->predictor(b, {0.2, 0.3, 0.1}), 1e-12, 1e-12));
}

TEST(IclReference, TwoStepsOfGdPlusPlusMatchTheClosedForm) {
  // ŷ = η₁ W Σ̂ x_q + η₂ W (I − η₁ Σ̂) Σ̂ A² x_q with A = I − γ₁ Σ̂ (docs/design.md 8.2).
  const TaskBatch b = sample_tasks(paper_task(4), 7, Stream::Tune, 0, 64);
  const double eta1 = 0.3, gamma1 = 0.2, eta2 = 0.4;
  const at::Tensor s = at::matmul(b.x.transpose(1, 2), b.x) / 10.0;
  const at::Tensor eye = at::eye(10, at::kDouble), a = eye - gamma1 * s;
  const at::Tensor closed =
      eta1 * at::matmul(b.w, s) + eta2 * at::matmul(at::matmul(at::matmul(b.w, eye - eta1 * s), s), at::matmul(a, a));
  EXPECT_TRUE(at::allclose(gd_plus_plus(2)->predictor(b, {eta1, gamma1, eta2, 0.7}), closed, 1e-10, 1e-10));
}

TEST(IclReference, RidgeSolvesItsNormalEquations) {
  TaskOptions o = paper_task(4);
  o.noise = 0.5;
  const TaskBatch b = sample_tasks(o, 8, Stream::Tune, 0, 16);
  const double lambda = 0.05;
  // min (1/N) Σ ‖W x_i − y_i‖² + λ ‖W‖² as one least-squares system [X; √(Nλ) I] wᵀ = [Y; 0].
  const at::Tensor aug_x = at::cat({b.x, std::sqrt(10 * lambda) * at::eye(10, at::kDouble).expand({16, 10, 10})}, 1);
  const at::Tensor aug_y = at::cat({b.y, at::zeros({16, 10, 1}, at::kDouble)}, 1);
  const at::Tensor w = std::get<0>(at::linalg_lstsq(aug_x, aug_y)).transpose(1, 2);
  EXPECT_TRUE(at::allclose(ridge()->predictor(b, {lambda}), w, 1e-9, 1e-9));
}

TEST(IclReference, LeastSquaresRecoversANoiselessTaskFromMoreExamplesThanDimensions) {
  TaskOptions o = paper_task(10);
  o.n = 20;
  const TaskBatch b = sample_tasks(o, 9, Stream::Tune, 0, 16);
  EXPECT_TRUE(at::allclose(least_squares()->predictor(b, {}), b.w, 1e-8, 1e-8));
}

}  // namespace
}  // namespace metalm::icl
