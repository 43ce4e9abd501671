// Causal tests of the inner optimization (docs/design.md 5.8). The analysis
// of analyze_model correlates each step's update Δ_k with the lens gradient;
// here the update is edited instead, at every analysed position at once, the
// rest of the model runs from the edited state (its real forward pass, not a
// lens) and the change of the model's own next-token loss is recorded:
//
//   remove_gradient       s_k + Δ − proj_g(Δ)          the part along the lens gradient g taken out
//   remove_random         s_k + Δ − √E sgn⟨Δ,r⟩ r      the same ‖·‖² E = ⟨Δ,g⟩²/‖g‖² taken out along a random unit r
//   remove_radial         s_k + Δ − (⟨Δ,s_k⟩/‖s_k‖²) s_k  the part that only changes the norm taken out
//   gradient_step         s_k − η g                    η = ⟨Δ,−g⟩/‖g‖², the position's least-squares step
//   gradient_step_median  s_k − η̃ g                    η̃ the median η of the step
//   line_search           s_k + α Δ                    for each α of a list
//
// Used by `metalm intervene`; written as the JSON of docs/design.md 7
// ("format": "metalm-intervene").
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <vector>

#include "metalm/analysis/lens.hpp"
#include "metalm/analysis/objective.hpp"
#include "metalm/config/config.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/model/causal_transformer.hpp"

namespace metalm {

inline constexpr const char* kInterveneFormat = "metalm-intervene";
inline constexpr int kInterveneVersion = 1;

struct InterveneOptions {
  std::vector<double> alphas{0.0, 0.5, 1.0, 1.5, 2.0};  // the line search's step multipliers
  int64_t resamples = 1000;                              // bootstrap resamples over sequences
  double level = 0.95;                                   // coverage of the intervals
  // Edited states per partial forward pass (stacked along the batch
  // dimension); 0: as many as keep the largest activation within 16 MiB
  // (one for large batches). Any value gives the same effects up to rounding.
  int64_t copies = 0;
};

// One step's effects at the analysed positions: [N] double each, the change
// of the model's loss (nats), edited minus unedited. NaN where an edit is
// not defined (a zero gradient or state); that position then keeps its state.
struct StepInterventions {
  at::Tensor step_size;        // η = ⟨Δ, −g⟩ / ‖g‖²
  at::Tensor gradient_energy;  // E = ⟨Δ, g⟩² / ‖g‖²: what remove_gradient and remove_random take out of ‖Δ‖²
  at::Tensor remove_gradient;
  at::Tensor remove_random;
  at::Tensor remove_radial;
  at::Tensor gradient_step;
  at::Tensor gradient_step_median;
  std::vector<at::Tensor> line_search;  // one per α
};

// The interventions of docs/design.md 5.8, each declared once: its JSON key,
// where its values live and its edited state.
struct Intervention {
  const char* key;
  at::Tensor StepInterventions::*member;
  const char* doc;
};
inline constexpr Intervention kInterventions[] = {
    {"remove_gradient", &StepInterventions::remove_gradient, "s_k + Δ − (⟨Δ,g⟩/‖g‖²) g"},
    {"remove_random", &StepInterventions::remove_random, "s_k + Δ − √E sgn(⟨Δ,r⟩) r, E = ⟨Δ,g⟩²/‖g‖²"},
    {"remove_radial", &StepInterventions::remove_radial, "s_k + Δ − (⟨Δ,s_k⟩/‖s_k‖²) s_k"},
    {"gradient_step", &StepInterventions::gradient_step, "s_k − η g, η = ⟨Δ,−g⟩/‖g‖²"},
    {"gradient_step_median", &StepInterventions::gradient_step_median, "s_k − η̃ g, η̃ the step's median η"},
};

struct TrajectoryInterventions {
  at::Tensor rows;       // [N] int64 flat positions b*T + t of the analysed positions
  at::Tensor loss;       // [N] double: the unedited loss
  std::vector<StepInterventions> steps;  // K
};

// The model's own loss when `state` takes the place of state s_j of the
// trajectory and the rest of the model runs from there. `state` is
// [m·B, T, d]: m edited copies of the trajectory's [B, T, d] stacked along
// the batch dimension (copy i is rows i·B … (i+1)·B − 1); returns
// [m·B, T] (nats, float64; any value where a position has no target).
using LossFromState = std::function<at::Tensor(size_t j, const at::Tensor& state)>;

// The lens gradient g of every step of a trajectory (K + 1 states [B, T, d])
// at its analysed positions (objective.valid()): K [N, d] tensors in the
// states' dtype, step k's that of objective.state_loss(k, ·) at s_k,
// `chunk` positions per backward pass.
std::vector<at::Tensor> lens_gradients(const std::vector<at::Tensor>& states, const Objective& objective,
                                       int64_t chunk);

// The least-squares step sizes η of every step of a trajectory (K + 1
// states [B, T, d]) at the analysed positions (objective.valid()): K [N]
// double tensors. Step k's gradient is that of objective.state_loss(k, ·)
// at s_k, `chunk` positions per backward pass.
std::vector<at::Tensor> step_sizes(const std::vector<at::Tensor>& states, const Objective& objective, int64_t chunk);

// Every intervention of every step of one trajectory, as the objective reads
// it (through a tuned lens: the translated states, whose edits loss_from
// maps back into the model's coordinates). median_step_size[k] is η̃ of
// step k (over all analysed positions of all batches, which is why the
// caller computes it: step_sizes, then quantile). `seed` keys the random
// directions (random_directions). The unedited loss is loss_from(K, s_K).
// The edits of a step go through loss_from `copies` at a time (stacked); an
// edit that leaves the state as it is (α = 1) changes nothing and costs no
// forward pass. `gradients` are the steps' lens gradients if the caller has
// them already (lens_gradients of the same states and objective); empty:
// computed here. Throws ShapeError on mismatched shapes, ConfigError for
// chunk or copies below 1.
TrajectoryInterventions intervene_trajectory(const std::vector<at::Tensor>& states, const Objective& objective,
                                             const LossFromState& loss_from,
                                             const std::vector<double>& median_step_size,
                                             const std::vector<double>& alphas, uint64_t seed, int64_t chunk,
                                             int64_t copies, const std::vector<at::Tensor>& gradients = {});

// Unit directions drawn uniformly on the sphere of R^d, one per analysed
// position ([N] int64 flat rows b*T + t of sequences of length T): [N, d]
// double. Coordinate j of the direction of sequence b, position t, step k is
// the normalised Gaussian z_j = √(−2 ln u) cos(2π v) (Box–Muller) with
//   u = ((mix(seed, b, t, k, 2j) >> 11) + 1) / 2^53,  v = (mix(seed, b, t, k, 2j+1) >> 11) / 2^53
// (mix: metalm/core/hash.hpp), reproducible outside metalm.
at::Tensor random_directions(uint64_t seed, const at::Tensor& rows, int64_t length, int64_t step, int64_t d);

// The interventions of `model` (in eval mode; its mode is restored) on
// `batches`, read through `lens` as the analysis reads them (the states
// translated, one objective; docs/design.md 5.2, 5.8), aggregated into the
// intervene JSON (docs/design.md 7; its "lens" is lens.name()). Of
// `analysis`: granularity, chunk and seed (random directions of batch b:
// seed + b; the bootstrap: seed); analysis.lens must name `lens`
// (check_lens: make_lens builds the lens from it).
nlohmann::json intervene_model(CausalTransformer& model, const std::vector<Batch>& batches,
                               const AnalysisConfig& analysis, const InterveneOptions& options,
                               const Lens& lens = *logit_lens());

// The same for a freshly initialised model of `config` (torch's global
// generator seeded with `init_seed` first), through the logit lens (a tuned
// lens fitted to the trained model means nothing for it): the untrained
// control.
nlohmann::json intervene_untrained(const ModelConfig& config, uint64_t init_seed, const std::vector<Batch>& batches,
                                   const AnalysisConfig& analysis, const InterveneOptions& options);

// Checks the options (alphas finite and at most 64 of them, resamples from 1
// to 100,000, level in (0, 1), copies not negative); ConfigError naming the
// option otherwise.
void check_intervene_options(const InterveneOptions& options);

}  // namespace metalm
