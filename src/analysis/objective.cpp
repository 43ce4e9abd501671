#include "metalm/analysis/objective.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>

#include <string>

#include "metalm/core/error.hpp"
#include "metalm/core/hash.hpp"

namespace metalm {
namespace {

std::string shape_of(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

// [B*T] int64 rows of another position, checked against the B*T positions of
// an objective's targets.
void check_sources(const at::Tensor& source, int64_t positions, const char* who) {
  if (source.dim() != 1 || source.size(0) != positions || source.scalar_type() != at::kLong)
    throw ShapeError(std::string(who) + ": the target sources must be [" + std::to_string(positions) +
                     "] int64 rows, got " + shape_of(source));
  if (positions > 0 && (source.min().item<int64_t>() < 0 || source.max().item<int64_t>() >= positions))
    throw ShapeError(std::string(who) + ": a target source row is outside 0.." + std::to_string(positions - 1));
}

// The belief control of the lens: the cross-entropy of the read-out of h
// against the read-out of the final state at the same row, a soft target
// (KL(p ‖ q(h)) plus the entropy of p, which has no gradient in h).
class BeliefLensObjective final : public Objective {
 public:
  BeliefLensObjective(LogitsFn logits_fn, at::Tensor final, at::Tensor valid)
      : logits_fn_(std::move(logits_fn)), final_(std::move(final)), valid_(std::move(valid)) {}

  at::Tensor loss(const at::Tensor& h, const at::Tensor& rows) const override {
    at::Tensor p;
    {
      at::NoGradGuard no_grad;
      p = at::softmax(logits_fn_(final_.index_select(0, rows).to(h.scalar_type())), 1);  // [N, V]
    }
    return -(p * at::log_softmax(logits_fn_(h), 1)).sum(1);  // [N]
  }
  at::Tensor valid() const override { return valid_; }
  std::unique_ptr<Objective> with_random_targets(uint64_t) const override {
    throw ShapeError("the belief control has no random-target control of its own");
  }

 private:
  LogitsFn logits_fn_;
  at::Tensor final_;  // [B*T, d], detached
  at::Tensor valid_;  // [B, T] bool
};

}  // namespace

LossAndGrad loss_and_grad(const Objective& objective, const at::Tensor& h, const at::Tensor& rows,
                          bool need_grad) {
  if (h.dim() != 2 || rows.dim() != 1 || rows.size(0) != h.size(0))
    throw ShapeError("objective: expected states [N, d] and rows [N], got " + shape_of(h) + " and " +
                     shape_of(rows));
  LossAndGrad out;
  if (!need_grad) {
    at::NoGradGuard no_grad;
    out.loss = objective.loss(h.detach(), rows);
    return out;
  }
  // A detached leaf copy: the gradient is taken with respect to the state
  // itself, whatever graph produced it.
  at::AutoGradMode grad_mode(true);
  at::Tensor leaf = h.detach().clone().set_requires_grad(true);
  at::Tensor loss = objective.loss(leaf, rows);  // [N]
  // Row-separable objective: d(sum of losses)/dh_i = dℓ_i/dh_i.
  out.grad = torch::autograd::grad({loss.sum()}, {leaf})[0];  // [N, d]
  out.loss = loss.detach();
  return out;
}

// ---- LensObjective ---------------------------------------------------------

LensObjective::LensObjective(LogitsFn logits_fn, at::Tensor targets, int64_t vocab_size)
    : logits_fn_(std::move(logits_fn)), targets_(std::move(targets)), vocab_size_(vocab_size) {
  if (!logits_fn_) throw ShapeError("LensObjective: logits function is empty");
  if (targets_.dim() != 2 || targets_.scalar_type() != at::kLong)
    throw ShapeError("LensObjective: targets must be [B, T] int64, got " + shape_of(targets_));
  if (vocab_size_ < 2) throw ShapeError("LensObjective: vocab_size must be at least 2");
  if (targets_.numel() > 0 && targets_.max().item<int64_t>() >= vocab_size_)
    throw ShapeError("LensObjective: a target id is >= vocab_size " + std::to_string(vocab_size_));
  flat_targets_ = targets_.reshape({-1}).contiguous();
}

at::Tensor LensObjective::loss(const at::Tensor& h, const at::Tensor& rows) const {
  at::Tensor logits = logits_fn_(h);  // [N, d] -> [N, V]
  if (logits.dim() != 2 || logits.size(0) != h.size(0) || logits.size(1) != vocab_size_)
    throw ShapeError("LensObjective: logits function returned " + shape_of(logits) + ", expected [" +
                     std::to_string(h.size(0)) + ", " + std::to_string(vocab_size_) + "]");
  at::Tensor target = flat_targets_.index_select(0, rows).clamp_min(0).unsqueeze(1);  // [N, 1]
  // Natural-log cross-entropy, position by position.
  return -at::log_softmax(logits, 1).gather(1, target).squeeze(1);  // [N]
}

at::Tensor LensObjective::valid() const { return targets_.ge(0); }

std::unique_ptr<Objective> LensObjective::with_random_targets(uint64_t seed) const {
  // A uniform draw among the V-1 wrong ids: shift the true id by 1..V-1. The
  // shift of sequence i, position t is a pure function of (seed, i, t),
  //   u = 1 + mix(seed, i, t) mod (V - 1)      (mix: metalm/core/hash.hpp)
  // so anyone can recompute it (tests/golden/make_analysis_golden.py does)
  // without replaying a generator's stream. The modulo bias is below
  // V / 2^64, far beneath any count a test or a run can see.
  const int64_t B = targets_.size(0), T = targets_.size(1);
  const auto wrong = static_cast<uint64_t>(vocab_size_ - 1);
  at::Tensor shift = at::empty({B, T}, at::TensorOptions(at::kLong));
  int64_t* u = shift.data_ptr<int64_t>();
  for (int64_t i = 0; i < B; ++i)
    for (int64_t t = 0; t < T; ++t) u[i * T + t] = 1 + static_cast<int64_t>(mix(seed, i, t) % wrong);
  at::Tensor random = (targets_ + shift.to(targets_.device())).remainder(vocab_size_);
  random = at::where(targets_.ge(0), random, targets_);  // keep "no target" marks
  return std::make_unique<LensObjective>(logits_fn_, random, vocab_size_);
}

std::unique_ptr<Objective> LensObjective::with_targets_of(const at::Tensor& source) const {
  check_sources(source, flat_targets_.size(0), "LensObjective");
  at::Tensor moved = flat_targets_.index_select(0, source.to(flat_targets_.device())).reshape(targets_.sizes());
  moved = at::where(targets_.ge(0), moved, targets_);  // keep "no target" marks
  return std::make_unique<LensObjective>(logits_fn_, moved, vocab_size_);
}

std::unique_ptr<Objective> LensObjective::with_belief(const at::Tensor& final) const {
  if (final.dim() != 2 || final.size(0) != flat_targets_.size(0))
    throw ShapeError("LensObjective: the final states must be [" + std::to_string(flat_targets_.size(0)) +
                     ", d], got " + shape_of(final));
  return std::make_unique<BeliefLensObjective>(logits_fn_, final.detach(), valid());
}

// ---- SquaredLossObjective ----------------------------------------------------

SquaredLossObjective::SquaredLossObjective(at::Tensor readout, at::Tensor targets, at::Tensor valid)
    : readout_(std::move(readout)), targets_(std::move(targets)), valid_(std::move(valid)) {
  if (readout_.dim() != 2) throw ShapeError("SquaredLossObjective: readout must be [m, d], got " + shape_of(readout_));
  if (targets_.dim() != 3 || targets_.size(2) != readout_.size(0))
    throw ShapeError("SquaredLossObjective: targets must be [B, T, " + std::to_string(readout_.size(0)) +
                     "], got " + shape_of(targets_));
  if (valid_.dim() != 2 || valid_.size(0) != targets_.size(0) || valid_.size(1) != targets_.size(1))
    throw ShapeError("SquaredLossObjective: valid must be [B, T] like targets, got " + shape_of(valid_));
  valid_ = valid_.to(at::kBool);
  flat_targets_ = targets_.reshape({-1, targets_.size(2)}).contiguous();
}

at::Tensor SquaredLossObjective::loss(const at::Tensor& h, const at::Tensor& rows) const {
  at::Tensor pred = at::matmul(h, readout_.to(h.scalar_type()).t());             // [N, d] -> [N, m]
  at::Tensor diff = pred - flat_targets_.index_select(0, rows).to(h.scalar_type());  // [N, m]
  return 0.5 * diff.pow(2).sum(1);                                               // [N]
}

std::unique_ptr<Objective> SquaredLossObjective::with_random_targets(uint64_t seed) const {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  at::Tensor valid_targets = targets_.masked_select(valid_.unsqueeze(2).expand_as(targets_));  // [n*m]
  double rms = valid_targets.numel() ? valid_targets.pow(2).mean().sqrt().item<double>() : 1.0;
  at::Tensor random = at::normal(0.0, rms, targets_.sizes(), gen, targets_.options());
  return std::make_unique<SquaredLossObjective>(readout_, random, valid_);
}

std::unique_ptr<Objective> SquaredLossObjective::with_targets_of(const at::Tensor& source) const {
  check_sources(source, flat_targets_.size(0), "SquaredLossObjective");
  at::Tensor moved = flat_targets_.index_select(0, source.to(flat_targets_.device())).reshape(targets_.sizes());
  return std::make_unique<SquaredLossObjective>(readout_, moved, valid_);
}

std::unique_ptr<Objective> SquaredLossObjective::with_belief(const at::Tensor& final) const {
  if (final.dim() != 2 || final.size(0) != flat_targets_.size(0) || final.size(1) != readout_.size(1))
    throw ShapeError("SquaredLossObjective: the final states must be [" + std::to_string(flat_targets_.size(0)) +
                     ", " + std::to_string(readout_.size(1)) + "], got " + shape_of(final));
  at::NoGradGuard no_grad;
  const at::Tensor prediction = at::matmul(final.detach().to(readout_.scalar_type()), readout_.t());  // [B*T, m]
  return std::make_unique<SquaredLossObjective>(readout_, prediction.reshape(targets_.sizes()).to(targets_.scalar_type()),
                                                valid_);
}

}  // namespace metalm
