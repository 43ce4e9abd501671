// Inner objectives: the per-position loss ℓ_t(h) of a representation h whose
// gradient the layer updates are compared with (docs/design.md section 5).
//
// An objective sees the states of a [B, T, d] trace flattened to rows
// [B*T, d]; `rows` says which flat positions b*T + t the given states belong
// to, so that each row is scored against its own target. Objectives must be
// row-separable (the loss of a row depends on that row only): the analyser
// then gets every row's gradient from one backward pass of the summed loss.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace metalm {

class Objective {
 public:
  virtual ~Objective() = default;

  // h: [N, d] states, rows: [N] int64 flat positions -> [N] per-position loss,
  // differentiable with respect to h.
  virtual at::Tensor loss(const at::Tensor& h, const at::Tensor& rows) const = 0;

  // [B, T] bool: the positions that have a target (for the CLM lens: a next
  // token). Only these are analysed.
  virtual at::Tensor valid() const = 0;

  // The random-target control: the same objective against targets drawn at
  // random (seeded), never equal to the true target where that is defined.
  virtual std::unique_ptr<Objective> with_random_targets(uint64_t seed) const = 0;

  // The paired controls of docs/design.md 5.5: the same objective with row r
  // scored against the target of row source[r] (source: [B*T] int64 flat
  // rows). nullptr when the objective has no such control (its statistics
  // are then NaN).
  virtual std::unique_ptr<Objective> with_targets_of(const at::Tensor& source) const {
    (void)source;
    return nullptr;
  }

  // The belief control (docs/design.md 5.5): the objective whose target at
  // every row is this objective's own read-out of `final` ([B*T, d], the last
  // state of the trajectory): the distribution p = softmax(z(s_K)) as a soft
  // target for the lens, R s_K for the squared loss. nullptr when unsupported.
  virtual std::unique_ptr<Objective> with_belief(const at::Tensor& final) const {
    (void)final;
    return nullptr;
  }
};

// Loss and gradient of an objective on detached copies of `h` (so the
// caller's graph, if any, is untouched). Gradient computed only when
// `need_grad`; otherwise runs without autograd and returns an undefined grad.
struct LossAndGrad {
  at::Tensor loss;  // [N]
  at::Tensor grad;  // [N, d]
};
LossAndGrad loss_and_grad(const Objective& objective, const at::Tensor& h, const at::Tensor& rows,
                          bool need_grad = true);

// The CLM logit lens: ℓ_t(h) = CE(logits_fn(h), target_t) in nats.
// logits_fn maps states [N, d] to logits [N, V]; for a model it applies the
// model's own final norm (statistics recomputed for h) and unembedding.
// targets: [B, T] int64 next-token ids; a negative id marks a position with no
// next token (not analysed).
using LogitsFn = std::function<at::Tensor(const at::Tensor&)>;

class LensObjective final : public Objective {
 public:
  LensObjective(LogitsFn logits_fn, at::Tensor targets, int64_t vocab_size);

  at::Tensor loss(const at::Tensor& h, const at::Tensor& rows) const override;
  at::Tensor valid() const override;
  // Each target replaced by a uniformly drawn *different* token id.
  std::unique_ptr<Objective> with_random_targets(uint64_t seed) const override;
  std::unique_ptr<Objective> with_targets_of(const at::Tensor& source) const override;
  // −Σ_v p_v log softmax(z(h))_v with p = softmax(z(final row)), detached.
  std::unique_ptr<Objective> with_belief(const at::Tensor& final) const override;

  const at::Tensor& targets() const { return targets_; }
  int64_t vocab_size() const { return vocab_size_; }

 private:
  LogitsFn logits_fn_;
  at::Tensor targets_;      // [B, T] int64
  at::Tensor flat_targets_;  // [B*T]
  int64_t vocab_size_;
};

// A squared loss against target vectors, for constructed settings:
// ℓ_t(h) = ½ ‖R h − y_t‖² with a fixed linear readout R.
class SquaredLossObjective final : public Objective {
 public:
  // readout: [m, d]; targets: [B, T, m]; valid: [B, T] bool.
  SquaredLossObjective(at::Tensor readout, at::Tensor targets, at::Tensor valid);

  at::Tensor loss(const at::Tensor& h, const at::Tensor& rows) const override;
  at::Tensor valid() const override { return valid_; }
  // Targets replaced by Gaussian vectors with the RMS of the valid targets.
  std::unique_ptr<Objective> with_random_targets(uint64_t seed) const override;
  std::unique_ptr<Objective> with_targets_of(const at::Tensor& source) const override;
  // ½ ‖R h − R s_K‖²: the final state's own read-out as the target.
  std::unique_ptr<Objective> with_belief(const at::Tensor& final) const override;

 private:
  at::Tensor readout_;       // [m, d]
  at::Tensor targets_;       // [B, T, m]
  at::Tensor flat_targets_;  // [B*T, m]
  at::Tensor valid_;         // [B, T] bool
};

}  // namespace metalm
