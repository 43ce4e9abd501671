#include "metalm/model/weights.hpp"

#include <torch/autograd.h>

#include <cmath>
#include <sstream>

#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/io/safetensors.hpp"

namespace metalm {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

// A NaN or Inf weight makes every output NaN: eval would print a null loss,
// greedy generation argmax garbage, the analysis NaN everywhere. Refuse it
// where it enters, naming the tensor (one pass over the weights, a few ms
// per million parameters).
void check_finite(const torch::Tensor& t, const std::string& name, const std::string& origin) {
  const torch::Tensor bad = t.isfinite().logical_not();
  const int64_t n = bad.sum().item<int64_t>();
  if (n == 0) return;
  const int64_t first = bad.reshape({-1}).nonzero()[0][0].item<int64_t>();
  const double value = t.reshape({-1})[first].item<double>();
  throw NumericError(origin + ": tensor '" + name + "' holds " + std::to_string(n) + " non-finite value" +
                     (n == 1 ? "" : "s") + " (the first, at flat index " + std::to_string(first) + ", is " +
                     (std::isnan(value) ? "nan" : value > 0 ? "inf" : "-inf") +
                     "); eval, analyze, generate and export load it with --allow-nonfinite");
}

}  // namespace

void save_weights(const torch::nn::Module& module, const std::string& path,
                  const std::map<std::string, std::string>& metadata) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) tensors.emplace(p.key(), p.value().detach());
  write_safetensors(path, tensors, metadata);
}

void load_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                  const std::string& origin, const LoadWeightsOptions& options) {
  auto params = module.named_parameters(/*recurse=*/true);
  // Check everything before touching the module, so a bad file leaves it intact.
  for (const auto& p : params) {
    const auto it = tensors.find(p.key());
    if (it == tensors.end())
      throw FormatError(origin + ": missing tensor '" + p.key() + "' (expected shape " +
                        shape_str(p.value().sizes()) + ")");
    if (it->second.sizes() != p.value().sizes())
      throw FormatError(origin + ": tensor '" + p.key() + "' has shape " + shape_str(it->second.sizes()) +
                        ", the model expects " + shape_str(p.value().sizes()));
    if (!at::isFloatingType(it->second.scalar_type()))
      throw FormatError(origin + ": tensor '" + p.key() + "' has dtype " + c10::toString(it->second.scalar_type()) +
                        ", expected a floating-point one");
    if (!options.allow_nonfinite) check_finite(it->second, p.key(), origin);
  }
  for (const auto& [name, t] : tensors)
    if (params.find(name) == nullptr)
      throw FormatError(origin + ": unexpected tensor '" + excerpt(name) + "' (shape " + shape_str(t.sizes()) +
                        "): not a parameter of this model");
  torch::NoGradGuard no_grad;
  for (auto& p : params) p.value().copy_(tensors.at(p.key()));
}

std::map<std::string, std::string> load_weights(torch::nn::Module& module, const std::string& path,
                                                const LoadWeightsOptions& options) {
  SafeTensorsFile file = read_safetensors(path);
  load_weights(module, file.tensors, path, options);
  return file.metadata;
}

}  // namespace metalm
