// The inner-optimization analyser: given an ordered list of states
// s_0 … s_K ([B, T, d] each) and an objective, measures position by position
// how much each update Δ = s_{k+1} − s_k behaves like a gradient step on the
// objective (docs/design.md section 5). The result keeps every analysed position's
// value (as [N] double tensors) so any aggregation can be done afterwards.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "metalm/analysis/objective.hpp"

namespace metalm {

struct TrajectoryOptions {
  int64_t chunk = 2048;        // positions per autograd chunk (bounds memory)
  uint64_t seed = 1234;        // seed of the random-target control
  bool random_control = true;  // also compute the random-target alignment
};

// One state s_k at the analysed positions. Tensors are [N] double.
struct StateRecord {
  std::string site;
  at::Tensor loss;       // ℓ_t(s_k)
  at::Tensor norm;       // ‖s_k‖
  at::Tensor norm_grad;  // ‖g_t(s_k)‖ (undefined for the last state)
};

// One inner step s_k -> s_{k+1} at the analysed positions. Tensors are [N] double.
struct StepRecord {
  std::string from, to;
  at::Tensor loss_before;            // ℓ_t(s_k)
  at::Tensor loss_after;             // ℓ_t(s_{k+1})
  at::Tensor alignment;              // cos(Δ, −g)
  at::Tensor alignment_random;       // cos(Δ, −g_random) (undefined without the control)
  at::Tensor step_size;              // ⟨Δ, −g⟩ / ‖g‖²
  at::Tensor step_size_random;       // the same against g_random
  at::Tensor first_order_decrease;   // ⟨−g, Δ⟩
  at::Tensor actual_decrease;        // ℓ_t(s_k) − ℓ_t(s_{k+1})
  at::Tensor norm_before;            // ‖s_k‖
  at::Tensor norm_update;            // ‖Δ‖
  at::Tensor norm_grad;              // ‖g‖
};

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
// Analyses the positions where objective.valid() is true. Gradients come from
// torch::autograd::grad on detached copies, `opts.chunk` positions at a time;
// everything else runs without autograd. Throws ShapeError on mismatched shapes.
Trajectory analyze_trajectory(const std::vector<at::Tensor>& states, const std::vector<std::string>& names,
                              const Objective& objective, const TrajectoryOptions& opts = {});

// Joins trajectories of several batches (same sites and length T) into one.
Trajectory concat(const std::vector<Trajectory>& parts);

}  // namespace metalm
