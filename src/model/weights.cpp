#include "metalm/model/weights.hpp"

#include <torch/autograd.h>

#include <sstream>

#include "metalm/core/error.hpp"
#include "metalm/io/safetensors.hpp"

namespace metalm {

namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

}  // namespace

void save_weights(const torch::nn::Module& module, const std::string& path,
                  const std::map<std::string, std::string>& metadata) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) tensors.emplace(p.key(), p.value().detach());
  write_safetensors(path, tensors, metadata);
}

void load_weights(torch::nn::Module& module, const std::map<std::string, torch::Tensor>& tensors,
                  const std::string& origin) {
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
  }
  for (const auto& [name, t] : tensors)
    if (params.find(name) == nullptr)
      throw FormatError(origin + ": unexpected tensor '" + name + "' (shape " + shape_str(t.sizes()) +
                        "): not a parameter of this model");
  torch::NoGradGuard no_grad;
  for (auto& p : params) p.value().copy_(tensors.at(p.key()));
}

std::map<std::string, std::string> load_weights(torch::nn::Module& module, const std::string& path) {
  SafeTensorsFile file = read_safetensors(path);
  load_weights(module, file.tensors, path);
  return file.metadata;
}

}  // namespace metalm
