// The tuned lens (Belrose et al. 2023, "Eliciting Latent Predictions from
// Transformers with the Tuned Lens"): one affine translator per residual
// state, A s + b, read through the model's own final norm and unembedding.
// The logit lens is the tuned lens whose translators are all the identity.
// docs/design.md 5.2 defines which translator reads which state.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"

namespace metalm {

// "format" in a tuned-lens file's safetensors metadata, and its version.
inline constexpr const char* kTunedLensFormat = "metalm-tuned-lens";
inline constexpr int kTunedLensVersion = 1;

struct Translator {
  at::Tensor weight;  // A [d, d]: reads A h + b
  at::Tensor bias;    // b [d]
};

struct TunedLens {
  // By site name (blocks.l.resid_pre, blocks.l.resid_mid, blocks.l.resid_post):
  // every residual state of the model but `final`, which the model's own
  // readout reads (its translator would be the identity).
  std::map<std::string, Translator> translators;

  // The sites of an n_layer model that a tuned lens translates: the
  // sublayer trajectory's states but the last (resid_pre[0], then
  // resid_mid[l] and resid_post[l], l < n_layer − 1, and resid_mid[n_layer − 1]).
  static std::vector<std::string> sites(int64_t n_layer);
  // Identity translators for every site (float32).
  static TunedLens identity(int64_t n_layer, int64_t d_model);

  // h [..., d] -> A h + b through the translator of `site`; `final` reads h
  // itself. Throws ShapeError for a site the lens lacks.
  at::Tensor translate(const std::string& site, const at::Tensor& h) const;
};

// The trajectory in the final state's coordinates (docs/design.md 5.2):
// u_k = A_k s_k + b_k for every state but `final`, which stays itself. The
// analysis of a tuned lens is the logit-lens analysis of these states (the
// Lens of lens.hpp reads through it).
std::vector<at::Tensor> translate_states(const TunedLens& lens, const std::vector<at::Tensor>& states,
                                         const std::vector<std::string>& names);

// Writes the lens as safetensors ("translators.<site>.weight" [d, d],
// "translators.<site>.bias" [d], float32), atomically; `metadata` is added
// to {"format": "metalm-tuned-lens", "version": "1", "d_model", "n_layer"}.
void save_tuned_lens(const std::string& path, const TunedLens& lens, const ModelConfig& model,
                     const std::map<std::string, std::string>& metadata = {});

// Reads a lens file for `model`: IoError when it cannot be read;
// FormatError (one line naming the file) when it is not a metalm tuned lens,
// misses a site's translator, has a shape that does not fit the model or a
// non-finite value.
TunedLens load_tuned_lens(const std::string& path, const ModelConfig& model);

}  // namespace metalm
