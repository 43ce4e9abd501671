// The lens: the read-out through which the analysis and the causal tests see
// the residual states (docs/design.md 5.2). The logit lens reads every state
// with the model's own final norm and unembedding; a tuned lens first maps
// state k into the final state's coordinates, u_k = A_k s_k + b_k. Either
// way the trajectory is then read under one objective, the logit lens of the
// translated states. A Lens is built once, by whoever holds the config (the
// CLI, the trainer: make_lens reads the file of analysis.lens), and handed to
// analyze_model and intervene_model, which read no files.
#pragma once

#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "metalm/analysis/tuned_lens.hpp"
#include "metalm/config/config.hpp"

namespace metalm {

class Lens {
 public:
  virtual ~Lens() = default;

  // "logit" or "tuned:PATH" (the "lens" of the JSON outputs).
  virtual const std::string& name() const = 0;

  // The trajectory as the lens reads it: states[k] (site names[k], [..., d])
  // mapped into the final state's coordinates. The logit lens returns the
  // states themselves.
  virtual std::vector<at::Tensor> translate(const std::vector<at::Tensor>& states,
                                            const std::vector<std::string>& names) const = 0;

  // The model state at `site` that the lens reads as `edited`, given a state
  // `state` that it reads as `reading`: state + A⁻¹ (edited − reading) in
  // float64, returned in state's dtype (a row whose reading is unchanged
  // keeps its state bit for bit). The logit lens, and every lens at `final`,
  // return `edited` itself. `state` and `reading` broadcast against
  // `edited`. Throws ShapeError when the site's translator is singular.
  virtual at::Tensor state_of(const std::string& site, const at::Tensor& edited, const at::Tensor& state,
                              const at::Tensor& reading) const = 0;
};

// The logit lens.
std::shared_ptr<const Lens> logit_lens();

// The tuned lens of `translators`, named `name` ("tuned:PATH").
std::shared_ptr<const Lens> tuned_lens(TunedLens translators, std::string name);

// The lens of analysis.lens for `model`: "logit", or "tuned:PATH" with the
// file read once (load_tuned_lens: IoError or FormatError naming the file).
// ConfigError naming analysis.lens for any other value (the config's
// validation refuses it first).
std::shared_ptr<const Lens> make_lens(const AnalysisConfig& analysis, const ModelConfig& model);

// ConfigError unless `lens` is the lens of analysis.lens (its name): a
// caller that forgot to hand the lens down fails instead of reading the
// states through another. `who` names the caller in the message.
void check_lens(const AnalysisConfig& analysis, const Lens& lens, const char* who);

}  // namespace metalm
