#include "metalm/analysis/trajectory.hpp"

#include <algorithm>
#include <cmath>

#include "metalm/core/error.hpp"
#include "metalm/model/device.hpp"

namespace metalm {
namespace {

// cos(a, b) and ⟨a, b⟩ / ‖b‖² row by row; 0/0 gives NaN (excluded from
// aggregates) rather than an invented value.
at::Tensor row_cos(const at::Tensor& dot, const at::Tensor& na, const at::Tensor& nb) { return dot / (na * nb); }

// Per-position results of one state on one chunk, in double.
struct ChunkState {
  at::Tensor h;         // [n, d] double
  at::Tensor loss;      // [n]
  at::Tensor grad;      // [n, d] double (undefined for the last state)
  at::Tensor grad_rnd;  // [n, d] double, against the random targets (undefined for the last state)
};

void put(at::Tensor& out, int64_t begin, const at::Tensor& values) {
  out.narrow(0, begin, values.size(0)).copy_(values);
}

// State k's loss of an objective as an objective of its own, for loss_and_grad.
class StateView final : public Objective {
 public:
  StateView(const Objective& o, size_t k) : o_(o), k_(k) {}
  at::Tensor loss(const at::Tensor& h, const at::Tensor& rows) const override { return o_.state_loss(k_, h, rows); }
  at::Tensor valid() const override { return o_.valid(); }
  std::unique_ptr<Objective> with_random_targets(uint64_t) const override {
    throw ShapeError("StateView: take the random targets of the objective it views");
  }

 private:
  const Objective& o_;
  size_t k_;
};

}  // namespace

Trajectory analyze_trajectory(const std::vector<at::Tensor>& states, const std::vector<std::string>& names,
                              const Objective& objective, const AnalysisConfig& config) {
  if (states.size() < 2) throw ShapeError("analyze_trajectory: need at least two states, got " + std::to_string(states.size()));
  if (names.size() != states.size())
    throw ShapeError("analyze_trajectory: " + std::to_string(states.size()) + " states but " +
                     std::to_string(names.size()) + " names");
  if (config.chunk < 1) throw ConfigError("analysis.chunk must be at least 1, got " + std::to_string(config.chunk));
  FullPrecisionScope exact;  // the objective's gradients in the states' dtype, whatever the caller's autocast
  const at::Tensor& s0 = states[0];
  if (s0.dim() != 3) throw ShapeError("analyze_trajectory: state '" + names[0] + "' must be [B, T, d]");
  for (size_t k = 1; k < states.size(); ++k)
    if (states[k].sizes() != s0.sizes())
      throw ShapeError("analyze_trajectory: state '" + names[k] + "' has a different shape from '" + names[0] + "'");

  Trajectory tr;
  tr.batch = s0.size(0);
  tr.length = s0.size(1);
  tr.width = s0.size(2);
  at::Tensor valid = objective.valid();
  if (valid.dim() != 2 || valid.size(0) != tr.batch || valid.size(1) != tr.length)
    throw ShapeError("analyze_trajectory: the objective's targets do not match the states' [B, T]");
  tr.rows = valid.reshape({-1}).nonzero().reshape({-1}).to(at::kLong);  // [N]
  tr.positions = tr.rows.remainder(tr.length);
  const int64_t n = tr.rows.size(0);
  const size_t K = states.size() - 1;

  const std::unique_ptr<Objective> control = objective.with_random_targets(static_cast<uint64_t>(config.seed));

  // Every statistic starts as NaN, so a position no chunk reached cannot pass for a value.
  const auto nans = [n] { return at::full({n}, NAN, at::TensorOptions(at::kDouble)); };
  for (size_t k = 0; k <= K; ++k) {
    StateRecord s;
    s.site = names[k];
    for (const auto& stat : kStateStatistics)
      if (holds(stat.presence, k, K + 1)) s.*stat.member = nans();
    tr.states.push_back(std::move(s));
  }
  for (size_t k = 0; k < K; ++k) {
    StepRecord st;
    st.from = names[k];
    st.to = names[k + 1];
    for (const auto& stat : kStepStatistics) st.*stat.member = nans();
    tr.steps.push_back(std::move(st));
  }

  std::vector<at::Tensor> flat;  // [B*T, d] views
  for (const auto& s : states) flat.push_back(s.detach().reshape({-1, tr.width}));

  for (int64_t begin = 0; begin < n; begin += config.chunk) {
    const int64_t len = std::min(config.chunk, n - begin);
    const at::Tensor rows = tr.rows.narrow(0, begin, len);
    ChunkState prev;
    for (size_t k = 0; k <= K; ++k) {
      const bool last = (k == K);
      const at::Tensor h = flat[k].index_select(0, rows);  // [n, d]
      ChunkState cur;
      LossAndGrad lg = loss_and_grad(StateView(objective, k), h, rows, !last);
      // Step k−1 is read through state k−1's loss, also after the step.
      at::Tensor loss_after;
      if (k > 0 && objective.reads_states_apart())
        loss_after = loss_and_grad(StateView(objective, k - 1), h, rows, false).loss.to(at::kDouble);
      at::NoGradGuard no_grad;
      cur.h = h.to(at::kDouble);
      cur.loss = lg.loss.to(at::kDouble);
      if (!loss_after.defined()) loss_after = cur.loss;
      if (!last) {
        cur.grad = lg.grad.to(at::kDouble);
        cur.grad_rnd = loss_and_grad(StateView(*control, k), h, rows, true).grad.to(at::kDouble);
      }
      StateRecord& rec = tr.states[k];
      put(rec.loss, begin, cur.loss);
      put(rec.norm, begin, cur.h.norm(2, {1}));
      if (!last) {
        const at::Tensor ng = cur.grad.norm(2, {1});
        put(rec.norm_grad, begin, ng);
        put(rec.cos_state_grad, begin, row_cos((cur.h * cur.grad).sum(1), cur.h.norm(2, {1}), ng));
        put(rec.cos_ones_grad, begin, cur.grad.sum(1) / (std::sqrt(static_cast<double>(tr.width)) * ng));
      }

      if (k > 0) {
        StepRecord& st = tr.steps[k - 1];
        const at::Tensor delta = cur.h - prev.h;               // [n, d]
        const at::Tensor nd = delta.norm(2, {1});              // ‖Δ‖
        const at::Tensor ng = prev.grad.norm(2, {1});          // ‖g‖
        const at::Tensor dot = -(delta * prev.grad).sum(1);    // ⟨Δ, −g⟩
        put(st.loss_before, begin, prev.loss);
        put(st.loss_after, begin, loss_after);
        put(st.alignment, begin, row_cos(dot, nd, ng));
        put(st.step_size, begin, dot / ng.pow(2));
        put(st.first_order_decrease, begin, dot);
        put(st.actual_decrease, begin, prev.loss - loss_after);
        put(st.norm_before, begin, prev.h.norm(2, {1}));
        put(st.norm_update, begin, nd);
        put(st.norm_grad, begin, ng);
        const at::Tensor ngr = prev.grad_rnd.norm(2, {1});      // ‖g'‖
        const at::Tensor dotr = -(delta * prev.grad_rnd).sum(1);  // ⟨Δ, −g'⟩
        put(st.alignment_random, begin, row_cos(dotr, nd, ngr));
        put(st.step_size_random, begin, dotr / ngr.pow(2));
        // The norm identity: ‖s_{k+1}‖² − ‖s_k‖² = 2⟨s_k, Δ⟩ + ‖Δ‖², both
        // parts kept; a gradient step of the measured η would add η²‖g‖².
        const at::Tensor nb = prev.h.norm(2, {1});               // ‖s_k‖
        const at::Tensor radial = (prev.h * delta).sum(1);       // ⟨s_k, Δ⟩
        put(st.cos_state_grad, begin, row_cos((prev.h * prev.grad).sum(1), nb, ng));
        put(st.radial_update, begin, radial / nb);
        put(st.norm_sq_growth, begin, cur.h.pow(2).sum(1) - prev.h.pow(2).sum(1));
        put(st.norm_sq_growth_radial, begin, 2.0 * radial);
        put(st.norm_sq_growth_update, begin, delta.pow(2).sum(1));
        put(st.norm_sq_growth_gradient_step, begin, dot.pow(2) / ng.pow(2));
      }
      prev = std::move(cur);
    }
  }
  return tr;
}

Trajectory concat(const std::vector<Trajectory>& parts) {
  if (parts.empty()) throw ShapeError("concat: no trajectories");
  if (parts.size() == 1) return parts[0];
  const Trajectory& first = parts[0];
  Trajectory out;
  out.length = first.length;
  out.width = first.width;
  std::vector<at::Tensor> rows, pos, cur, tgt;
  int64_t offset = 0;  // flat rows of later batches continue after earlier ones
  for (const auto& p : parts) {
    if (p.length != first.length || p.width != first.width || p.states.size() != first.states.size())
      throw ShapeError("concat: trajectories differ in length, width or number of states");
    for (size_t k = 0; k < p.states.size(); ++k)
      if (p.states[k].site != first.states[k].site)
        throw ShapeError("concat: trajectories have different sites ('" + p.states[k].site + "' vs '" +
                         first.states[k].site + "')");
    rows.push_back(p.rows + offset);
    pos.push_back(p.positions);
    if (p.current_token.defined()) cur.push_back(p.current_token);
    if (p.target_token.defined()) tgt.push_back(p.target_token);
    offset += p.batch * p.length;
    out.batch += p.batch;
  }
  out.rows = at::cat(rows);
  out.positions = at::cat(pos);
  if (cur.size() == parts.size()) out.current_token = at::cat(cur);
  if (tgt.size() == parts.size()) out.target_token = at::cat(tgt);

  // Every part of a statistic, or undefined where a part lacks it.
  auto join = [&](auto record_of, auto member) {
    std::vector<at::Tensor> ts;
    for (const auto& p : parts) {
      const at::Tensor& t = record_of(p).*member;
      if (!t.defined()) return at::Tensor();
      ts.push_back(t);
    }
    return at::cat(ts);
  };
  for (size_t k = 0; k < first.states.size(); ++k) {
    StateRecord s;
    s.site = first.states[k].site;
    for (const auto& stat : kStateStatistics)
      s.*stat.member = join([k](const Trajectory& p) -> const StateRecord& { return p.states[k]; }, stat.member);
    out.states.push_back(std::move(s));
  }
  for (size_t k = 0; k < first.steps.size(); ++k) {
    StepRecord st;
    st.from = first.steps[k].from;
    st.to = first.steps[k].to;
    for (const auto& stat : kStepStatistics)
      st.*stat.member = join([k](const Trajectory& p) -> const StepRecord& { return p.steps[k]; }, stat.member);
    out.steps.push_back(std::move(st));
  }
  return out;
}

}  // namespace metalm
