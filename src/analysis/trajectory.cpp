#include "metalm/analysis/trajectory.hpp"

#include <algorithm>
#include <cmath>

#include "metalm/analysis/controls.hpp"
#include "metalm/core/error.hpp"
#include "metalm/model/device.hpp"

namespace metalm {
namespace {

// cos(a, b) from ⟨a, b⟩ and the norms; 0/0 gives NaN (excluded from
// aggregates) rather than an invented value.
at::Tensor row_cos(const at::Tensor& dot, const at::Tensor& na, const at::Tensor& nb) { return dot / (na * nb); }
at::Tensor row_dot(const at::Tensor& a, const at::Tensor& b) { return (a * b).sum(1); }
at::Tensor row_norm(const at::Tensor& a) { return a.norm(2, {1}); }

// One state's loss and gradients over all analysed positions, in double.
struct StateValues {
  at::Tensor h;     // [n, d]
  at::Tensor loss;  // [n]
  // [n, d], undefined for the last state (no step starts there) and for a
  // control the objective does not offer.
  at::Tensor grad, grad_uniform, grad_shuffled, grad_bigram, grad_belief;
};

// The objectives whose gradients a step is compared with.
struct Objectives {
  const Objective* main = nullptr;
  std::unique_ptr<Objective> uniform, shuffled, bigram, belief;
};

// Loss (and, unless `last`, every gradient) of state `flat` [B*T, d] at the
// analysed rows, `chunk` rows at a time.
StateValues evaluate_state(const at::Tensor& flat, const at::Tensor& rows, const Objectives& o, bool last,
                           int64_t chunk) {
  const int64_t n = rows.size(0);
  const at::Tensor h = flat.index_select(0, rows);  // [n, d]
  StateValues v;
  v.h = h.to(at::kDouble);
  std::vector<at::Tensor> loss;
  std::vector<at::Tensor> grads[5];
  const Objective* controls[5] = {o.main, o.uniform.get(), o.shuffled.get(), o.bigram.get(), o.belief.get()};
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t len = std::min(chunk, n - begin);
    const at::Tensor r = rows.narrow(0, begin, len), hc = h.narrow(0, begin, len);
    LossAndGrad lg = loss_and_grad(*o.main, hc, r, !last);
    loss.push_back(lg.loss.to(at::kDouble));
    if (last) continue;
    grads[0].push_back(lg.grad.to(at::kDouble));
    for (int c = 1; c < 5; ++c)
      if (controls[c]) grads[c].push_back(loss_and_grad(*controls[c], hc, r, true).grad.to(at::kDouble));
  }
  const auto cat = [n, &v](const std::vector<at::Tensor>& parts) {
    return parts.empty() ? at::Tensor() : (n ? at::cat(parts) : at::zeros({0, v.h.size(1)}, v.h.options()));
  };
  v.loss = loss.empty() ? at::zeros({0}, v.h.options()) : at::cat(loss);
  if (!last) {
    v.grad = n ? at::cat(grads[0]) : at::zeros({0, v.h.size(1)}, v.h.options());
    v.grad_uniform = cat(grads[1]);
    v.grad_shuffled = cat(grads[2]);
    v.grad_bigram = cat(grads[3]);
    v.grad_belief = cat(grads[4]);
  }
  return v;
}

// cos(Δ, −g') and ⟨Δ, −g'⟩ / ‖g'‖² of a control gradient (NaN when the
// objective has no such control).
void control_statistics(const at::Tensor& delta, const at::Tensor& nd, const at::Tensor& g, at::Tensor& alignment,
                        at::Tensor* step_size) {
  if (!g.defined()) return;
  const at::Tensor ng = row_norm(g), dot = -row_dot(delta, g);
  alignment.copy_(row_cos(dot, nd, ng));
  if (step_size) step_size->copy_(dot / ng.pow(2));
}

void step_statistics(StepRecord& st, const StateValues& prev, const StateValues& cur, const at::Tensor& fallback,
                     const std::vector<at::Tensor>& partners) {
  const at::Tensor& g = prev.grad;
  const at::Tensor delta = cur.h - prev.h;  // [n, d]
  const at::Tensor nd = row_norm(delta);    // ‖Δ‖
  const at::Tensor ng = row_norm(g);        // ‖g‖
  const at::Tensor nb = row_norm(prev.h);   // ‖s_k‖
  const at::Tensor dot = -row_dot(delta, g);  // ⟨Δ, −g⟩
  const at::Tensor eta = dot / ng.pow(2);
  st.loss_before.copy_(prev.loss);
  st.loss_after.copy_(cur.loss);
  st.alignment.copy_(row_cos(dot, nd, ng));
  st.step_size.copy_(eta);
  st.step_size_scaled.copy_(eta / nb.pow(2));
  // The angle between s_k and s_{k+1} as 2 atan2(‖â − b̂‖, ‖â + b̂‖) of the unit
  // vectors: arccos of the cosine loses half its digits near 0.
  const at::Tensor a_hat = prev.h / nb.unsqueeze(1), b_hat = cur.h / row_norm(cur.h).unsqueeze(1);
  st.angular_step.copy_(2.0 * at::atan2(row_norm(a_hat - b_hat), row_norm(a_hat + b_hat)));
  st.first_order_decrease.copy_(dot);
  st.actual_decrease.copy_(prev.loss - cur.loss);
  st.norm_before.copy_(nb);
  st.norm_update.copy_(nd);
  st.norm_grad.copy_(ng);

  control_statistics(delta, nd, prev.grad_uniform, st.alignment_uniform, &st.step_size_uniform);
  control_statistics(delta, nd, prev.grad_shuffled, st.alignment_shuffled, &st.step_size_shuffled);
  control_statistics(delta, nd, prev.grad_bigram, st.alignment_bigram, &st.step_size_bigram);
  control_statistics(delta, nd, prev.grad_belief, st.alignment_belief, &st.step_size_belief);
  if (prev.grad_bigram.defined()) st.bigram_fallback.copy_(fallback);
  if (const at::Tensor& gb = prev.grad_belief; gb.defined()) {
    // g = g_∥ + g_⊥ with g_∥ along the belief gradient.
    const at::Tensor nbel = row_norm(gb), along = row_dot(g, gb);
    st.cos_grad_belief.copy_(row_cos(along, ng, nbel));
    const at::Tensor across = g - (along / nbel.pow(2)).unsqueeze(1) * gb;  // g_⊥
    st.alignment_unexplained.copy_(row_cos(-row_dot(delta, across), nd, row_norm(across)));
  }

  // The norm identity: ‖s_{k+1}‖² − ‖s_k‖² = 2⟨s_k, Δ⟩ + ‖Δ‖².
  const at::Tensor radial = row_dot(prev.h, delta);  // ⟨s_k, Δ⟩
  st.cos_state_grad.copy_(row_cos(row_dot(prev.h, g), nb, ng));
  st.radial_update.copy_(radial / nb);
  st.norm_sq_growth.copy_(cur.h.pow(2).sum(1) - prev.h.pow(2).sum(1));
  st.norm_sq_growth_radial.copy_(2.0 * radial);
  st.norm_sq_growth_update.copy_(delta.pow(2).sum(1));
  st.norm_sq_growth_gradient_signed.copy_(dot * dot.abs() / ng.pow(2));

  // The permutation null: each update against the true gradient of its
  // partner. partners[0] is the per-position statistic, all of them the band.
  const at::Tensor unit_delta = delta / nd.unsqueeze(1);
  const at::Tensor unit_descent = -g / ng.unsqueeze(1);
  for (size_t p = 0; p < partners.size(); ++p) {
    const at::Tensor cos = row_dot(unit_delta, unit_descent.index_select(0, partners[p]));
    const at::Tensor finite = cos.isfinite();
    st.null_sum[static_cast<int64_t>(p)] = at::where(finite, cos, at::zeros_like(cos)).sum();
    st.null_count[static_cast<int64_t>(p)] = finite.sum().to(at::kDouble);
    if (p == 0) {
      const at::Tensor gp = g.index_select(0, partners[0]);
      const at::Tensor dotp = -row_dot(delta, gp), ngp = row_norm(gp);
      st.alignment_permuted.copy_(row_cos(dotp, nd, ngp));
      st.norm_sq_growth_gradient_signed_permuted.copy_(dotp * dotp.abs() / ngp.pow(2));
    }
  }
}

// The inputs of analyze_trajectory, checked: the states' shape and the
// settings it reads.
void check_inputs(const std::vector<at::Tensor>& states, const std::vector<std::string>& names,
                  const AnalysisConfig& config) {
  if (states.size() < 2) throw ShapeError("analyze_trajectory: need at least two states, got " + std::to_string(states.size()));
  if (names.size() != states.size())
    throw ShapeError("analyze_trajectory: " + std::to_string(states.size()) + " states but " +
                     std::to_string(names.size()) + " names");
  if (config.chunk < 1) throw ConfigError("analysis.chunk must be at least 1, got " + std::to_string(config.chunk));
  if (config.permutations < 1)
    throw ConfigError("analysis.permutations must be at least 1, got " + std::to_string(config.permutations));
  if (states[0].dim() != 3) throw ShapeError("analyze_trajectory: state '" + names[0] + "' must be [B, T, d]");
  for (size_t k = 1; k < states.size(); ++k)
    if (states[k].sizes() != states[0].sizes())
      throw ShapeError("analyze_trajectory: state '" + names[k] + "' has a different shape from '" + names[0] + "'");
}

// The controls of docs/design.md 5.5, drawn from the batch's seed: their
// objectives, the bigram control's fallback marks and the permutation
// null's partners.
struct Controls {
  Objectives objectives;
  at::Tensor fallback;
  std::vector<at::Tensor> partners;
};

Controls draw_controls(const Objective& objective, const Trajectory& tr, const at::Tensor& current,
                       const at::Tensor& final_state, const AnalysisConfig& config) {
  const auto seed = static_cast<uint64_t>(config.seed);
  const int64_t total = tr.batch * tr.length;
  const at::Tensor rows_cpu = tr.rows.cpu();
  Controls c;
  const at::Tensor bigram = bigram_sources(
      rows_cpu, current.defined() ? current.reshape({-1}).cpu().index_select(0, rows_cpu) : at::Tensor(), total, seed,
      c.fallback);
  Objectives& o = c.objectives;
  o.main = &objective;
  o.uniform = objective.with_random_targets(seed);
  o.shuffled = objective.with_targets_of(shuffled_sources(rows_cpu, total, seed).to(tr.rows.device()));
  o.bigram = objective.with_targets_of(bigram.to(tr.rows.device()));
  o.belief = objective.with_belief(final_state);
  for (int64_t p = 0; p < config.permutations; ++p)
    c.partners.push_back(cycle_partners(rows_cpu, seed, kPermutedStream + static_cast<uint64_t>(p)));
  return c;
}

// The records of every state and step, each statistic NaN (so a position no
// computation reached cannot pass for a value) and the null band zero.
void add_empty_records(Trajectory& tr, const std::vector<std::string>& names, int64_t permutations) {
  const int64_t n = tr.count();
  const size_t K = names.size() - 1;
  const auto nans = [](int64_t size) { return at::full({size}, NAN, at::TensorOptions(at::kDouble)); };
  for (size_t k = 0; k <= K; ++k) {
    StateRecord s;
    s.site = names[k];
    for (const auto& stat : kStateStatistics)
      if (holds(stat.presence, k, K + 1)) s.*stat.member = nans(n);
    tr.states.push_back(std::move(s));
  }
  for (size_t k = 0; k < K; ++k) {
    StepRecord st;
    st.from = names[k];
    st.to = names[k + 1];
    for (const auto& stat : kStepStatistics) st.*stat.member = nans(n);
    st.null_sum = at::zeros({permutations}, at::TensorOptions(at::kDouble));
    st.null_count = at::zeros({permutations}, at::TensorOptions(at::kDouble));
    tr.steps.push_back(std::move(st));
  }
}

// State k's values on the CPU: its loss and, unless it is the last, every
// gradient (evaluate_state).
StateValues state_values(const std::vector<at::Tensor>& flat, size_t k, const at::Tensor& rows, const Objectives& o,
                         int64_t chunk) {
  const size_t K = flat.size() - 1;
  StateValues v = evaluate_state(flat[k], rows, o, k == K, chunk);
  at::NoGradGuard no_grad;
  v.h = v.h.cpu();
  v.loss = v.loss.cpu();
  for (at::Tensor* g : {&v.grad, &v.grad_uniform, &v.grad_shuffled, &v.grad_bigram, &v.grad_belief})
    if (g->defined()) *g = g->cpu();
  // A state that already is the final one has its final prediction: the
  // belief gradient is exactly 0 there (its statistics 0/0), not the
  // rounding left by reading the two through different ops.
  if (v.grad_belief.defined()) {
    const at::Tensor at_final = v.h.eq(flat[K].index_select(0, rows).cpu().to(at::kDouble)).all(1);
    v.grad_belief.index_put_({at_final}, 0.0);
  }
  return v;
}

// The per-state statistics of kStateStatistics.
void state_statistics(StateRecord& rec, const StateValues& v, bool last, int64_t width) {
  at::NoGradGuard no_grad;
  rec.loss.copy_(v.loss);
  rec.norm.copy_(row_norm(v.h));
  if (last) return;
  const at::Tensor ng = row_norm(v.grad);
  rec.norm_grad.copy_(ng);
  rec.cos_state_grad.copy_(row_cos(row_dot(v.h, v.grad), row_norm(v.h), ng));
  rec.cos_ones_grad.copy_(v.grad.sum(1) / (std::sqrt(static_cast<double>(width)) * ng));
}

}  // namespace

Trajectory analyze_trajectory(const std::vector<at::Tensor>& states, const std::vector<std::string>& names,
                              const Objective& objective, const AnalysisConfig& config, const at::Tensor& current) {
  check_inputs(states, names, config);
  FullPrecisionScope exact;  // the objective's gradients in the states' dtype, whatever the caller's autocast
  Trajectory tr;
  tr.batch = states[0].size(0);
  tr.length = states[0].size(1);
  tr.width = states[0].size(2);
  const at::Tensor valid = objective.valid();
  if (valid.dim() != 2 || valid.size(0) != tr.batch || valid.size(1) != tr.length)
    throw ShapeError("analyze_trajectory: the objective's targets do not match the states' [B, T]");
  if (current.defined() && (current.dim() != 2 || current.size(0) != tr.batch || current.size(1) != tr.length))
    throw ShapeError("analyze_trajectory: the current tokens do not match the states' [B, T]");
  tr.rows = valid.reshape({-1}).nonzero().reshape({-1}).to(at::kLong);  // [N]
  tr.positions = tr.rows.remainder(tr.length);
  const size_t K = states.size() - 1;

  std::vector<at::Tensor> flat;  // [B*T, d] views
  for (const auto& s : states) flat.push_back(s.detach().reshape({-1, tr.width}));
  const Controls controls = draw_controls(objective, tr, current, flat[K], config);
  add_empty_records(tr, names, config.permutations);

  // State by state; each step once both of its states are evaluated.
  StateValues prev;
  for (size_t k = 0; k <= K; ++k) {
    StateValues cur = state_values(flat, k, tr.rows, controls.objectives, config.chunk);
    state_statistics(tr.states[k], cur, k == K, tr.width);
    if (k > 0) {
      at::NoGradGuard no_grad;
      step_statistics(tr.steps[k - 1], prev, cur, controls.fallback, controls.partners);
    }
    prev = std::move(cur);
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
    // The null band's sums and counts add up over batches.
    for (auto member : {&StepRecord::null_sum, &StepRecord::null_count})
      for (const auto& p : parts) {
        const at::Tensor& t = p.steps[k].*member;
        if (!t.defined()) continue;
        st.*member = (st.*member).defined() ? st.*member + t : t.clone();
      }
    out.steps.push_back(std::move(st));
  }
  return out;
}

}  // namespace metalm
