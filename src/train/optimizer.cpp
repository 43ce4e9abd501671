#include "metalm/train/optimizer.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/autograd.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cmath>

#include "metalm/core/error.hpp"

namespace metalm {

bool decays_parameter(const std::string& name, int64_t dim, const TrainConfig& cfg) {
  // Vectors (biases, norm gains) carry scale and offset, not features: decaying
  // them only fights the normalisation.
  if (dim < 2) return false;
  const bool embedding = name == "wte.weight" || name == "wpe.weight";
  return !embedding || cfg.decay_embeddings;
}

ParamGroupNames param_group_names(CausalTransformer& model, const TrainConfig& cfg) {
  ParamGroupNames out;
  for (const auto& item : model->named_parameters()) {
    if (decays_parameter(item.key(), item.value().dim(), cfg))
      out.decay.push_back(item.key());
    else
      out.no_decay.push_back(item.key());
  }
  return out;
}

namespace {

// A tensor on `flat`'s storage at [offset, offset + numel(sizes)), contiguous.
// Autograd does not see it as a view of `flat`, so it can be a parameter's
// data or gradient (in-place ops and detach_ on views are refused).
at::Tensor alias_of(const at::Tensor& flat, int64_t offset, at::IntArrayRef sizes) {
  std::vector<int64_t> strides(sizes.size(), 1);
  for (int64_t i = static_cast<int64_t>(sizes.size()) - 2; i >= 0; --i) strides[i] = strides[i + 1] * sizes[i + 1];
  at::Tensor t = at::empty({0}, flat.options());
  t.set_(flat.storage(), flat.storage_offset() + offset, sizes, strides);
  return t;
}

std::string state_key(const at::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

struct AdamWArgs {
  float decay;         // 1 - lr * weight_decay
  float beta1, beta2;  // moment decay
  float step_size;     // lr / (1 - beta1^t)
  float sqrt_bc2;      // sqrt(1 - beta2^t)
  float eps;
};

// One AdamW update in one pass over p, g, m, v, in torch::optim::AdamW's
// order of operations: p *= 1 - lr wd; m = b1 m + (1 - b1) g;
// v = b2 v + (1 - b2) g²; p -= step_size m / (sqrt(v) / sqrt(bc2) + eps).
void adamw_cpu(float* p, const float* g, float* m, float* v, int64_t n, const AdamWArgs& a) {
  const float one_minus_b1 = 1.0f - a.beta1, one_minus_b2 = 1.0f - a.beta2;
  at::parallel_for(0, n, int64_t{1} << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float gi = g[i];
      const float mi = m[i] * a.beta1 + gi * one_minus_b1;
      const float vi = v[i] * a.beta2 + gi * gi * one_minus_b2;
      const float denom = std::sqrt(vi) / a.sqrt_bc2 + a.eps;
      p[i] = p[i] * a.decay - a.step_size * mi / denom;
      m[i] = mi;
      v[i] = vi;
    }
  });
}

// The same update with tensor ops, for devices other than the CPU.
void adamw_tensors(at::Tensor p, const at::Tensor& g, at::Tensor m, at::Tensor v, const AdamWArgs& a) {
  p.mul_(a.decay);
  m.mul_(a.beta1).add_(g, 1.0 - a.beta1);
  v.mul_(a.beta2).addcmul_(g, g, 1.0 - a.beta2);
  p.addcdiv_(m, (v.sqrt() / a.sqrt_bc2).add_(a.eps), -a.step_size);
}

}  // namespace

FlatAdamW::FlatAdamW(std::vector<torch::optim::OptimizerParamGroup> groups, torch::optim::AdamWOptions defaults)
    : torch::optim::AdamW(std::move(groups), std::move(defaults)) {
  at::NoGradGuard no_grad;
  int64_t n = 0;
  at::TensorOptions options;
  for (const auto& group : param_groups()) {
    segments_.push_back({n, 0});
    for (const auto& p : group.params()) {
      if (p.scalar_type() != at::kFloat)
        throw ShapeError("FlatAdamW: parameters must be float32 (master weights), found " +
                         std::string(c10::toString(p.scalar_type())));
      if (n > 0 && p.device() != options.device())
        throw ShapeError("FlatAdamW: all parameters must be on one device");
      options = p.options();
      n += p.numel();
    }
    segments_.back().length = n - segments_.back().begin;
  }
  options = options.requires_grad(false);
  params_ = at::empty({n}, options);
  grads_ = at::zeros({n}, options);
  exp_avg_ = at::zeros({n}, options);
  exp_avg_sq_ = at::zeros({n}, options);
  int64_t offset = 0;
  for (auto& group : param_groups()) {
    for (auto& p : group.params()) {
      at::Tensor data = alias_of(params_, offset, p.sizes());
      data.copy_(p.detach());
      p.set_data(data);
      p.mutable_grad() = alias_of(grads_, offset, p.sizes());
      offset += p.numel();
    }
  }
  alias_state();
}

void FlatAdamW::alias_state() {
  int64_t offset = 0;
  for (auto& group : param_groups()) {
    for (auto& p : group.params()) {
      auto state = std::make_unique<torch::optim::AdamWParamState>();
      state->step(steps_);
      state->exp_avg(alias_of(exp_avg_, offset, p.sizes()));
      state->exp_avg_sq(alias_of(exp_avg_sq_, offset, p.sizes()));
      state_[state_key(p)] = std::move(state);
      offset += p.numel();
    }
  }
}

void FlatAdamW::adopt_replaced_gradients() {
  at::NoGradGuard no_grad;
  int64_t offset = 0;
  for (auto& group : param_groups()) {
    for (auto& p : group.params()) {
      const int64_t n = p.numel();
      if (p.data_ptr() != params_.narrow(0, offset, n).data_ptr())
        throw ShapeError("FlatAdamW: a parameter's data was replaced after the optimizer was made (Module::to, "
                         "set_data or load into new tensors); make the optimizer afterwards");
      at::Tensor slot = grads_.narrow(0, offset, n);
      if (!p.grad().defined() || p.grad().data_ptr() != slot.data_ptr()) {
        // zero_grad(set_to_none) or an assignment to .grad: take its values
        // (zeros for none) and make the slice the gradient again.
        if (p.grad().defined())
          slot.copy_(p.grad().reshape({-1}));
        else
          slot.zero_();
        p.mutable_grad() = alias_of(grads_, offset, p.sizes());
      }
      offset += n;
    }
  }
}

torch::Tensor FlatAdamW::step(LossClosure closure) {
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  adopt_replaced_gradients();
  at::NoGradGuard no_grad;
  ++steps_;
  for (size_t gi = 0; gi < param_groups().size(); ++gi) {
    const auto& o = static_cast<const torch::optim::AdamWOptions&>(param_groups()[gi].options());
    const Segment seg = segments_[gi];
    if (seg.length == 0) continue;
    const double t = static_cast<double>(steps_);
    const double bc1 = 1.0 - std::pow(std::get<0>(o.betas()), t);
    const double bc2 = 1.0 - std::pow(std::get<1>(o.betas()), t);
    const AdamWArgs a{static_cast<float>(1.0 - o.lr() * o.weight_decay()), static_cast<float>(std::get<0>(o.betas())),
                      static_cast<float>(std::get<1>(o.betas())),      static_cast<float>(o.lr() / bc1),
                      static_cast<float>(std::sqrt(bc2)),              static_cast<float>(o.eps())};
    at::Tensor p = params_.narrow(0, seg.begin, seg.length), g = grads_.narrow(0, seg.begin, seg.length);
    at::Tensor m = exp_avg_.narrow(0, seg.begin, seg.length), v = exp_avg_sq_.narrow(0, seg.begin, seg.length);
    if (params_.is_cpu())
      adamw_cpu(p.data_ptr<float>(), g.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), seg.length, a);
    else
      adamw_tensors(p, g, m, v, a);
  }
  for (auto& entry : state_) static_cast<torch::optim::AdamWParamState&>(*entry.second).step(steps_);
  return loss;
}

void FlatAdamW::load(torch::serialize::InputArchive& archive) {
  torch::optim::AdamW::load(archive);
  // The archive's moments arrive as new tensors: copy them into the flat
  // buffers, then alias the state again.
  at::NoGradGuard no_grad;
  int64_t offset = 0;
  steps_ = 0;
  for (auto& group : param_groups()) {
    for (auto& p : group.params()) {
      at::Tensor m = exp_avg_.narrow(0, offset, p.numel()), v = exp_avg_sq_.narrow(0, offset, p.numel());
      const auto it = state_.find(state_key(p));
      if (it == state_.end()) {
        m.zero_();
        v.zero_();
      } else {
        const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
        if (st.exp_avg().numel() != p.numel() || st.exp_avg_sq().numel() != p.numel())
          throw ShapeError("optimizer state: moments of " + std::to_string(st.exp_avg().numel()) +
                           " values for a parameter of " + std::to_string(p.numel()));
        m.copy_(st.exp_avg().reshape({-1}));
        v.copy_(st.exp_avg_sq().reshape({-1}));
        steps_ = std::max(steps_, st.step());
      }
      offset += p.numel();
    }
  }
  alias_state();
}

void FlatAdamW::zero_grad() { grads_.zero_(); }

double FlatAdamW::grad_norm() {
  adopt_replaced_gradients();
  return grads_.norm().item<double>();
}

void FlatAdamW::clip(double norm, double max_norm) {
  if (max_norm <= 0.0 || !(norm > max_norm)) return;
  adopt_replaced_gradients();
  // The 1e-6 as in torch.nn.utils.clip_grad_norm_, so results match PyTorch.
  grads_.mul_(max_norm / (norm + 1e-6));
}

std::unique_ptr<FlatAdamW> make_optimizer(CausalTransformer& model, const TrainConfig& cfg) {
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& item : model->named_parameters())
    (decays_parameter(item.key(), item.value().dim(), cfg) ? decay : no_decay).push_back(item.value());

  auto options = [&](double weight_decay) {
    auto o = std::make_unique<torch::optim::AdamWOptions>(cfg.lr);
    o->betas(std::make_tuple(cfg.beta1, cfg.beta2)).eps(cfg.adam_eps).weight_decay(weight_decay);
    return o;
  };
  // Both groups always exist (possibly empty), so a checkpoint's optimizer
  // state has the same group layout whatever the config.
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, options(cfg.weight_decay));
  groups.emplace_back(no_decay, options(0.0));
  return std::make_unique<FlatAdamW>(std::move(groups), torch::optim::AdamWOptions(cfg.lr)
                                                            .betas(std::make_tuple(cfg.beta1, cfg.beta2))
                                                            .eps(cfg.adam_eps)
                                                            .weight_decay(0.0));
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups())
    static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

double global_grad_norm(const std::vector<torch::Tensor>& params) {
  at::NoGradGuard no_grad;
  double sum = 0.0;
  for (const auto& p : params) {
    const auto& g = p.grad();
    if (!g.defined()) continue;
    sum += g.to(at::kDouble).pow(2).sum().item<double>();
  }
  return std::sqrt(sum);
}

void clip_gradients(const std::vector<torch::Tensor>& params, double norm, double max_norm) {
  if (max_norm <= 0.0 || !(norm > max_norm)) return;
  at::NoGradGuard no_grad;
  // The 1e-6 as in torch.nn.utils.clip_grad_norm_, so results match PyTorch.
  const double scale = max_norm / (norm + 1e-6);
  for (const auto& p : params) {
    auto g = p.grad();
    if (g.defined()) g.mul_(scale);
  }
}

}  // namespace metalm
