// A module's weights as a safetensors file: its named_parameters (names as in
// the module, e.g. "blocks.0.attn.c_attn.weight"), each in its own dtype.
// Buffers (rope tables, sinusoidal positions) are derived from the config and
// not saved.
#pragma once

#include <torch/nn/module.h>

#include <map>
#include <string>

namespace metalm {

// Writes atomically (temp file, then rename). `metadata` goes to the
// "__metadata__" map of the header.
void save_weights(const torch::nn::Module& module, const std::string& path,
                  const std::map<std::string, std::string>& metadata = {});

struct LoadWeightsOptions {
  // Load NaN and Inf values instead of refusing them (forensics on a diverged
  // or corrupt model; every result computed from it is then suspect).
  bool allow_nonfinite = false;
};

// Strict: every parameter must be in the file with the same shape, and the
// file must hold nothing else; otherwise FormatError naming the tensor and the
// file (and nothing is modified). A tensor holding NaN or Inf is a
// NumericError naming it, unless options.allow_nonfinite. Values are
// converted to each parameter's dtype. Returns the file's metadata.
std::map<std::string, std::string> load_weights(torch::nn::Module& module, const std::string& path,
                                                const LoadWeightsOptions& options = {});

// The same strict load from tensors already in memory (e.g. renamed from an
// imported checkpoint); `origin` names their source in error messages.
void load_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                  const std::string& origin, const LoadWeightsOptions& options = {});

}  // namespace metalm
