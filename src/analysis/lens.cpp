#include "metalm/analysis/lens.hpp"

#include <map>
#include <utility>

#include "metalm/core/error.hpp"
#include "metalm/model/trace.hpp"

namespace metalm {
namespace {

class LogitLens final : public Lens {
 public:
  const std::string& name() const override { return name_; }
  std::vector<at::Tensor> translate(const std::vector<at::Tensor>& states,
                                    const std::vector<std::string>& names) const override {
    if (states.size() != names.size())
      throw ShapeError("logit lens: " + std::to_string(states.size()) + " states but " +
                       std::to_string(names.size()) + " names");
    return states;
  }
  at::Tensor state_of(const std::string&, const at::Tensor& edited, const at::Tensor&,
                      const at::Tensor&) const override {
    return edited;
  }

 private:
  std::string name_ = "logit";
};

class Tuned final : public Lens {
 public:
  Tuned(TunedLens lens, std::string name) : lens_(std::move(lens)), name_(std::move(name)) {
    // A⁻¹ of every translator, for state_of; a singular one is refused when used.
    for (const auto& [site, t] : lens_.translators) {
      try {
        inverse_[site] = at::linalg_inv(t.weight.to(at::kDouble));
      } catch (const c10::Error&) {
        inverse_[site] = at::Tensor();
      }
    }
  }
  const std::string& name() const override { return name_; }
  std::vector<at::Tensor> translate(const std::vector<at::Tensor>& states,
                                    const std::vector<std::string>& names) const override {
    return translate_states(lens_, states, names);
  }
  at::Tensor state_of(const std::string& site, const at::Tensor& edited, const at::Tensor& state,
                      const at::Tensor& reading) const override {
    if (site == site_name(Site::Final)) return edited;
    const auto it = inverse_.find(site);
    if (it == inverse_.end()) throw ShapeError("tuned lens: no translator for site '" + site + "'");
    if (!it->second.defined())
      throw ShapeError("tuned lens " + name_ + ": the translator of '" + site +
                       "' is singular, so an edit of its reading has no model state");
    at::NoGradGuard no_grad;
    const at::Tensor du = edited.to(at::kDouble) - reading.to(at::kDouble);
    const int64_t d = du.size(-1);
    const at::Tensor ds = at::matmul(du.reshape({-1, d}), it->second.to(du.device()).t()).reshape(du.sizes());
    return (state.to(at::kDouble) + ds).to(state.scalar_type());
  }

 private:
  TunedLens lens_;
  std::string name_;
  std::map<std::string, at::Tensor> inverse_;  // A⁻¹ [d, d] double by site; undefined: singular
};

}  // namespace

std::shared_ptr<const Lens> logit_lens() {
  static const std::shared_ptr<const Lens> lens = std::make_shared<const LogitLens>();
  return lens;
}

std::shared_ptr<const Lens> tuned_lens(TunedLens translators, std::string name) {
  return std::make_shared<const Tuned>(std::move(translators), std::move(name));
}

std::shared_ptr<const Lens> make_lens(const AnalysisConfig& analysis, const ModelConfig& model) {
  if (analysis.lens == "logit") return logit_lens();
  const std::string path = analysis.tuned_lens_path();
  if (path.empty())
    throw ConfigError("analysis.lens = '" + analysis.lens +
                      "': must be logit or tuned:PATH (a file written by metalm lens-train)");
  return tuned_lens(load_tuned_lens(path, model), analysis.lens);
}

void check_lens(const AnalysisConfig& analysis, const Lens& lens, const char* who) {
  if (analysis.lens != lens.name())
    throw ConfigError(std::string(who) + ": analysis.lens is '" + analysis.lens + "' but the lens handed down is '" +
                      lens.name() + "' (build it with make_lens)");
}

}  // namespace metalm
