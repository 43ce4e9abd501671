// The inner-optimization analyser: given an ordered list of states
// s_0 … s_K ([B, T, d] each) and an objective, measures position by position
// how much each update Δ = s_{k+1} − s_k behaves like a gradient step on the
// objective (docs/design.md section 5). The result keeps every analysed position's
// value (as [N] double tensors) so any aggregation can be done afterwards.
#pragma once

#include <ATen/ATen.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "metalm/analysis/objective.hpp"
#include "metalm/config/config.hpp"

namespace metalm {

// One state s_k at the analysed positions. Tensors are [N] double; the
// statistics are listed once, in kStateStatistics below.
struct StateRecord {
  std::string site;
  at::Tensor loss;
  at::Tensor norm;
  at::Tensor norm_grad;
  at::Tensor cos_state_grad;  // the norm identity (docs/design.md 5.4)
  at::Tensor cos_ones_grad;
};

// One inner step s_k -> s_{k+1} at the analysed positions. Tensors are [N]
// double; the statistics are listed once, in kStepStatistics below. The
// controls (docs/design.md 5.5) compare the same Δ with another gradient g'.
struct StepRecord {
  std::string from, to;
  at::Tensor loss_before;
  at::Tensor loss_after;
  at::Tensor alignment;
  at::Tensor alignment_uniform;
  at::Tensor alignment_shuffled;
  at::Tensor alignment_bigram;
  at::Tensor alignment_belief;
  at::Tensor alignment_permuted;
  at::Tensor alignment_unexplained;  // cos(Δ, −g_⊥), g_⊥ the part of g across the belief gradient
  at::Tensor cos_grad_belief;
  at::Tensor bigram_fallback;
  at::Tensor step_size;
  at::Tensor step_size_uniform;
  at::Tensor step_size_shuffled;
  at::Tensor step_size_bigram;
  at::Tensor step_size_belief;
  at::Tensor step_size_scaled;
  at::Tensor angular_step;
  at::Tensor first_order_decrease;
  at::Tensor actual_decrease;
  at::Tensor norm_before;
  at::Tensor norm_update;
  at::Tensor norm_grad;
  // The norm identity (docs/design.md 5.3): how the update changes ‖s‖².
  at::Tensor cos_state_grad;
  at::Tensor radial_update;
  at::Tensor norm_sq_growth;
  at::Tensor norm_sq_growth_radial;
  at::Tensor norm_sq_growth_update;
  at::Tensor norm_sq_growth_gradient_signed;
  at::Tensor norm_sq_growth_gradient_signed_permuted;
  // Not per position: for each permutation p of the null band, the sum and
  // the count of the finite cos(Δ_r, −g_π(r)) over the analysed positions
  // ([P] double each; concat adds them).
  at::Tensor null_sum;
  at::Tensor null_count;
};

// How a per-position statistic is aggregated into the analysis JSON
// (docs/analysis-schema.md), as bits of Statistic::aggregates:
//   kMean          "<key>": the mean over the analysed positions
//   kSummary       "<key>": {mean, std, median, q10, q90} ("<key>_summary"
//                  when the statistic also has kMean)
//   kPositional    per-position means: a step's position_0,
//                  positions_after_0, by_position and by_frequency; a
//                  state's "<key>_by_position" and norm_by_frequency
//   kFreqSpearman  a state's "<key>_freq_spearman": Spearman correlation with
//                  the training count of the current / next token
inline constexpr unsigned kMean = 1u << 0;
inline constexpr unsigned kSummary = 1u << 1;
inline constexpr unsigned kPositional = 1u << 2;
inline constexpr unsigned kFreqSpearman = 1u << 3;

// Which records of a trajectory hold the statistic (elsewhere its tensor is
// undefined and its JSON value null).
enum class Presence {
  Always,
  BeforeLast,  // every state but the last (no step starts there)
};

// One per-position statistic of a record: its JSON key, where it lives, how
// it is aggregated and what it is. analyze_trajectory fills `member` for
// every analysed position; everything else (NaN initialisation, concat, the
// exchange format between ranks, the JSON) walks these lists, so a new
// statistic is one member, one row here and its computation.
template <class Record>
struct Statistic {
  const char* key;
  at::Tensor Record::*member;
  unsigned aggregates;
  Presence presence;
  const char* doc;
};

// The per-position statistics of a state s_k (g = ∇ℓ_t(s_k)).
inline constexpr Statistic<StateRecord> kStateStatistics[] = {
    {"loss", &StateRecord::loss, kMean | kSummary | kPositional, Presence::Always, "ℓ_t(s_k), the lens loss"},
    {"norm", &StateRecord::norm, kSummary | kPositional | kFreqSpearman, Presence::Always, "‖s_k‖"},
    {"norm_grad", &StateRecord::norm_grad, kSummary, Presence::BeforeLast, "‖g‖"},
    // ≈ 0 when the final norm is scale-invariant (LayerNorm, RMSNorm; up to eps).
    {"cos_state_grad", &StateRecord::cos_state_grad, kSummary, Presence::BeforeLast, "cos(s_k, g)"},
    // ≈ 0 when the final norm is a LayerNorm (it removes the mean; up to eps).
    {"cos_ones_grad", &StateRecord::cos_ones_grad, kSummary, Presence::BeforeLast, "cos(1, g) = Σ_i g_i / (√d ‖g‖)"},
};

// The per-position statistics of a step s_k -> s_{k+1} (Δ = s_{k+1} − s_k,
// g = ∇ℓ_t(s_k); g' the gradient of a control, docs/design.md 5.5).
inline constexpr unsigned kAlignmentLike = kSummary | kPositional;
inline constexpr Statistic<StepRecord> kStepStatistics[] = {
    {"loss_before", &StepRecord::loss_before, kMean | kPositional, Presence::Always, "ℓ_t(s_k)"},
    {"loss_after", &StepRecord::loss_after, kMean | kPositional, Presence::Always, "ℓ_t(s_{k+1})"},
    {"alignment", &StepRecord::alignment, kAlignmentLike, Presence::Always, "cos(Δ, −g)"},
    {"alignment_uniform", &StepRecord::alignment_uniform, kAlignmentLike, Presence::Always,
     "cos(Δ, −g'), g' against a uniformly drawn wrong token"},
    {"alignment_shuffled", &StepRecord::alignment_shuffled, kAlignmentLike, Presence::Always,
     "cos(Δ, −g'), g' against the target of another position of the batch"},
    {"alignment_bigram", &StepRecord::alignment_bigram, kAlignmentLike, Presence::Always,
     "cos(Δ, −g'), g' against the target of another position with the same current token"},
    {"alignment_belief", &StepRecord::alignment_belief, kAlignmentLike, Presence::Always,
     "cos(Δ, −g_b), g_b toward the model's own final prediction"},
    {"alignment_permuted", &StepRecord::alignment_permuted, kSummary, Presence::Always,
     "cos(Δ_r, −g_π(r)), the true gradient of another position"},
    {"alignment_unexplained", &StepRecord::alignment_unexplained, kSummary, Presence::Always,
     "cos(Δ, −g_⊥), g_⊥ = g minus its projection on g_b"},
    {"cos_grad_belief", &StepRecord::cos_grad_belief, kSummary, Presence::Always, "cos(g, g_b)"},
    {"bigram_fallback", &StepRecord::bigram_fallback, kMean, Presence::Always,
     "1 where the bigram control took the shuffled target (no other position with the same token)"},
    {"step_size", &StepRecord::step_size, kSummary | kPositional, Presence::Always, "η = ⟨Δ, −g⟩ / ‖g‖²"},
    {"step_size_uniform", &StepRecord::step_size_uniform, kSummary, Presence::Always, "⟨Δ, −g'⟩ / ‖g'‖² (uniform)"},
    {"step_size_shuffled", &StepRecord::step_size_shuffled, kSummary, Presence::Always, "⟨Δ, −g'⟩ / ‖g'‖² (shuffled)"},
    {"step_size_bigram", &StepRecord::step_size_bigram, kSummary, Presence::Always, "⟨Δ, −g'⟩ / ‖g'‖² (bigram)"},
    {"step_size_belief", &StepRecord::step_size_belief, kSummary, Presence::Always, "⟨Δ, −g_b⟩ / ‖g_b‖²"},
    // Under a scale-invariant final norm ‖g‖ ∝ 1/‖s‖, so η grows like ‖s‖²; these do not.
    {"step_size_scaled", &StepRecord::step_size_scaled, kSummary | kPositional, Presence::Always, "η / ‖s_k‖²"},
    {"angular_step", &StepRecord::angular_step, kSummary, Presence::Always, "arccos(cos(s_k, s_{k+1})), radians"},
    {"first_order_decrease", &StepRecord::first_order_decrease, kMean, Presence::Always, "⟨−g, Δ⟩"},
    {"actual_decrease", &StepRecord::actual_decrease, kMean, Presence::Always, "ℓ_t(s_k) − ℓ_t(s_{k+1})"},
    {"norm_before", &StepRecord::norm_before, kSummary | kPositional, Presence::Always, "‖s_k‖"},
    {"norm_update", &StepRecord::norm_update, kSummary | kPositional, Presence::Always, "‖Δ‖"},
    {"norm_grad", &StepRecord::norm_grad, kSummary, Presence::Always, "‖g‖"},
    {"cos_state_grad", &StepRecord::cos_state_grad, kSummary, Presence::Always, "cos(s_k, g)"},
    {"radial_update", &StepRecord::radial_update, kSummary, Presence::Always, "⟨Δ, s_k⟩ / ‖s_k‖"},
    // ‖s_{k+1}‖² − ‖s_k‖² = 2⟨s_k, Δ⟩ + ‖Δ‖², each part kept: the means add up.
    {"norm_sq_growth", &StepRecord::norm_sq_growth, kMean | kSummary, Presence::Always, "‖s_{k+1}‖² − ‖s_k‖²"},
    {"norm_sq_growth_radial", &StepRecord::norm_sq_growth_radial, kMean | kSummary, Presence::Always,
     "2⟨s_k, Δ⟩"},
    {"norm_sq_growth_update", &StepRecord::norm_sq_growth_update, kMean | kSummary, Presence::Always, "‖Δ‖²"},
    // What a gradient step of the measured η adds to ‖s‖², signed by the
    // step's direction: a function of the alignment and ‖Δ‖, read against its
    // value under the permutation null.
    {"norm_sq_growth_gradient_signed", &StepRecord::norm_sq_growth_gradient_signed, kMean | kSummary,
     Presence::Always, "⟨Δ, −g⟩ |⟨Δ, −g⟩| / ‖g‖²"},
    {"norm_sq_growth_gradient_signed_permuted", &StepRecord::norm_sq_growth_gradient_signed_permuted,
     kMean | kSummary, Presence::Always, "⟨Δ_r, −g_π(r)⟩ |⟨Δ_r, −g_π(r)⟩| / ‖g_π(r)‖²"},
};

// The controls whose alignment the gap alignment − alignment_<control> is
// reported against (docs/design.md 5.6), and which of them are matched nulls
// (the strongest of those is the headline's reference). The belief is an
// explanation, not a null: every update heads partly toward the state the
// trajectory ends in, whose read-out the belief is (even at initialisation),
// so its gap is reported but is not the headline's reference.
struct Control {
  const char* name;
  at::Tensor StepRecord::*alignment;
  bool matched;
};
inline constexpr Control kControls[] = {
    {"uniform", &StepRecord::alignment_uniform, false},  {"shuffled", &StepRecord::alignment_shuffled, true},
    {"bigram", &StepRecord::alignment_bigram, true},     {"belief", &StepRecord::alignment_belief, false},
    {"permuted", &StepRecord::alignment_permuted, false},
};

// Statistics of a step computed from the others when the JSON is written
// (not kept per position, not exchanged between ranks).
struct DerivedStatistic {
  const char* key;
  at::Tensor (*compute)(const StepRecord&);
  unsigned aggregates;  // kMean or kSummary
  const char* doc;
};
inline const DerivedStatistic kDerivedStepStatistics[] = {
    {"relative_update", [](const StepRecord& s) { return s.norm_update / s.norm_before; }, kSummary, "‖Δ‖ / ‖s_k‖"},
    {"fraction_decreased", [](const StepRecord& s) { return s.actual_decrease.gt(0).to(at::kDouble); }, kMean,
     "share of positions whose lens loss fell"},
};

// Whether state k of a trajectory with `states` states holds a statistic.
inline bool holds(Presence p, size_t k, size_t states) { return p == Presence::Always || k + 1 < states; }

struct Trajectory {
  int64_t batch = 0, length = 0, width = 0;  // B, T, d of the states
  at::Tensor rows;       // [N] int64 flat position b*T + t of each analysed position
  at::Tensor positions;  // [N] int64 t
  // Optional, filled by callers that know the tokens (analyze_model):
  at::Tensor current_token;  // [N] int64 x_t
  at::Tensor target_token;   // [N] int64 x_{t+1}
  std::vector<StateRecord> states;
  std::vector<StepRecord> steps;

  int64_t count() const { return rows.defined() ? rows.size(0) : 0; }
};

// states: K+1 tensors [B, T, d] (same shape), names: their site names.
// Analyses the positions where objective.valid() is true, with the controls
// of docs/design.md 5.5 drawn from config.seed (the batch's seed σ_b):
// uniform (objective.with_random_targets), shuffled and bigram
// (with_targets_of), belief (with_belief of the last state), the
// permutation null and its band of config.permutations permutations.
// `current` ([B, T] int64 current tokens, optional) pairs the bigram
// control; without it every position falls back to the shuffled target.
// Gradients come from torch::autograd::grad on detached copies,
// `config.chunk` positions at a time; everything else runs without autograd.
// Of `config` only chunk, seed and permutations are read. A tuned lens is
// read by mapping the states first (Lens::translate, docs/design.md 5.2).
// Throws ShapeError on mismatched shapes, ConfigError on a chunk or a number
// of permutations below 1.
Trajectory analyze_trajectory(const std::vector<at::Tensor>& states, const std::vector<std::string>& names,
                              const Objective& objective, const AnalysisConfig& config = {},
                              const at::Tensor& current = {});

// Joins trajectories of several batches (same sites and length T) into one.
Trajectory concat(const std::vector<Trajectory>& parts);

}  // namespace metalm
