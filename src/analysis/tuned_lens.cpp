#include "metalm/analysis/tuned_lens.hpp"

#include <set>

#include "metalm/core/error.hpp"
#include "metalm/io/safetensors.hpp"
#include "metalm/model/trace.hpp"

namespace metalm {
namespace {

const std::string kPrefix = "translators.";

std::string shape_of(const at::Tensor& t) {
  std::string s = "[";
  for (int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
  return s + "]";
}

}  // namespace

std::vector<std::string> TunedLens::sites(int64_t n_layer) {
  std::vector<std::string> out{site_name(Site::ResidPre, 0)};
  for (int64_t l = 0; l < n_layer; ++l) {
    out.push_back(site_name(Site::ResidMid, l));
    if (l + 1 < n_layer) out.push_back(site_name(Site::ResidPost, l));
  }
  return out;
}

TunedLens TunedLens::identity(int64_t n_layer, int64_t d_model) {
  TunedLens lens;
  for (const auto& site : sites(n_layer))
    lens.translators[site] = {at::eye(d_model, at::kFloat), at::zeros({d_model}, at::kFloat)};
  return lens;
}

at::Tensor TunedLens::translate(const std::string& site, const at::Tensor& h) const {
  if (site == site_name(Site::Final)) return h;
  const auto it = translators.find(site);
  if (it == translators.end()) throw ShapeError("tuned lens: no translator for site '" + site + "'");
  const at::Tensor a = it->second.weight.to(h.options()), b = it->second.bias.to(h.options());
  return at::addmm(b, h.reshape({-1, h.size(-1)}), a.t()).reshape(h.sizes());  // A h + b, row by row
}

void save_tuned_lens(const std::string& path, const TunedLens& lens, const ModelConfig& model,
                     const std::map<std::string, std::string>& metadata) {
  std::map<std::string, torch::Tensor> tensors;
  for (const auto& [site, t] : lens.translators) {
    tensors[kPrefix + site + ".weight"] = t.weight.detach().to(at::kFloat).contiguous();
    tensors[kPrefix + site + ".bias"] = t.bias.detach().to(at::kFloat).contiguous();
  }
  std::map<std::string, std::string> meta = metadata;
  meta["format"] = kTunedLensFormat;
  meta["version"] = std::to_string(kTunedLensVersion);
  meta["d_model"] = std::to_string(model.d_model);
  meta["n_layer"] = std::to_string(model.n_layer);
  write_safetensors(path, tensors, meta);
}

TunedLens load_tuned_lens(const std::string& path, const ModelConfig& model) {
  const SafeTensorsFile file = read_safetensors(path, at::kFloat);
  auto fail = [&path](const std::string& what) -> FormatError { return FormatError(path + ": " + what); };
  const auto format = file.metadata.find("format");
  if (format == file.metadata.end() || format->second != kTunedLensFormat)
    throw fail(std::string("not a metalm tuned lens (no \"format\": \"") + kTunedLensFormat +
               "\" in its metadata); write one with `metalm lens-train`");
  const auto version = file.metadata.find("version");
  if (version == file.metadata.end() || version->second != std::to_string(kTunedLensVersion))
    throw fail("tuned-lens version " + (version == file.metadata.end() ? std::string("missing") : version->second) +
               ", this metalm reads version " + std::to_string(kTunedLensVersion));
  const int64_t d = model.d_model;
  const std::vector<std::string> sites = TunedLens::sites(model.n_layer);
  const std::set<std::string> known(sites.begin(), sites.end());
  for (const auto& [name, t] : file.tensors) {
    const bool weight = name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
    const bool bias = name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    const std::string site = name.rfind(kPrefix, 0) == 0 && (weight || bias)
                                 ? name.substr(kPrefix.size(), name.size() - kPrefix.size() - (weight ? 7 : 5))
                                 : std::string();
    if (!known.count(site))
      throw fail("tensor '" + name + "' is not the translator of a residual site of this " +
                 std::to_string(model.n_layer) + "-layer model");
  }
  TunedLens lens;
  for (const auto& site : sites) {
    const auto w = file.tensors.find(kPrefix + site + ".weight"), b = file.tensors.find(kPrefix + site + ".bias");
    if (w == file.tensors.end() || b == file.tensors.end())
      throw fail("no translator for site '" + site + "' (the lens was not trained for this model)");
    if (w->second.sizes() != at::IntArrayRef{d, d} || b->second.sizes() != at::IntArrayRef{d})
      throw fail("the translator of '" + site + "' is " + shape_of(w->second) + " + " + shape_of(b->second) +
                 ", the model needs [" + std::to_string(d) + ", " + std::to_string(d) + "] + [" + std::to_string(d) +
                 "] (d_model " + std::to_string(d) + ")");
    if (!at::isfinite(w->second).all().item<bool>() || !at::isfinite(b->second).all().item<bool>())
      throw fail("the translator of '" + site + "' holds NaN or Inf");
    lens.translators[site] = {w->second, b->second};
  }
  return lens;
}

std::vector<at::Tensor> translate_states(const TunedLens& lens, const std::vector<at::Tensor>& states,
                                         const std::vector<std::string>& names) {
  if (states.size() != names.size())
    throw ShapeError("translate_states: " + std::to_string(states.size()) + " states but " +
                     std::to_string(names.size()) + " names");
  std::vector<at::Tensor> out;
  at::NoGradGuard no_grad;
  for (size_t k = 0; k < states.size(); ++k) out.push_back(lens.translate(names[k], states[k]));
  return out;
}

}  // namespace metalm
