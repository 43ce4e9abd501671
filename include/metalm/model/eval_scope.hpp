// A scope in which a model runs in eval mode: dropout off, so what is
// evaluated, generated or analysed is the deterministic computation. The
// module's own mode is restored on exit, whatever happens; with
// Parameters::Frozen, so is each parameter's requires_grad (a lens trained
// against a frozen model computes no gradient for the model's weights).
#pragma once

#include <torch/nn/module.h>

#include <vector>

namespace metalm {

class EvalScope {
 public:
  enum class Parameters { Unchanged, Frozen };

  explicit EvalScope(torch::nn::Module& module, Parameters parameters = Parameters::Unchanged)
      : module_(module), was_training_(module.is_training()) {
    module_.eval();
    if (parameters == Parameters::Frozen)
      for (auto& p : module_.parameters()) {
        requires_grad_.push_back(p.requires_grad());
        p.set_requires_grad(false);
      }
  }
  ~EvalScope() {
    if (!requires_grad_.empty()) {
      size_t i = 0;
      for (auto& p : module_.parameters()) p.set_requires_grad(requires_grad_[i++]);
    }
    module_.train(was_training_);
  }
  EvalScope(const EvalScope&) = delete;
  EvalScope& operator=(const EvalScope&) = delete;

 private:
  torch::nn::Module& module_;
  bool was_training_;
  std::vector<bool> requires_grad_;  // each parameter's, in parameters() order (Frozen only)
};

}  // namespace metalm
