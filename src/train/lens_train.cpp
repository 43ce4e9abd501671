#include "metalm/train/lens_train.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>

#include <algorithm>
#include <cmath>

#include "metalm/analysis/analyze_model.hpp"
#include "metalm/core/error.hpp"
#include "metalm/model/eval_scope.hpp"
#include "metalm/model/trace.hpp"

namespace metalm {
namespace {

// KL(p ‖ q) per position, from log-probabilities [N, V] -> [N].
at::Tensor kl_rows(const at::Tensor& logp, const at::Tensor& logq) { return (logp.exp() * (logp - logq)).sum(-1); }

Batch window_batch(const TokenDataset& data, const std::vector<int64_t>& starts, int64_t seq_len) {
  std::vector<at::Tensor> rows;
  for (int64_t s : starts) rows.push_back(data.slice(s, seq_len + 1));
  const at::Tensor all = at::stack(rows);  // [B, T+1]
  return {all.narrow(1, 0, seq_len).contiguous(), all.narrow(1, 1, seq_len).contiguous()};
}

}  // namespace

LensData lens_data(const TokenDataset& data, const LensTrainOptions& o, int64_t seq_len) {
  if (o.heldout_fraction <= 0 || o.heldout_fraction >= 1)
    throw ConfigError("lens training: the held-out fraction must be in (0, 1)");
  const int64_t n = data.size();
  const int64_t split = static_cast<int64_t>(std::floor(static_cast<double>(n) * (1.0 - o.heldout_fraction)));
  const int64_t window = seq_len + 1;
  if (split < window || n - split < window)
    throw FormatError(data.path() + ": " + std::to_string(n) + " tokens are too few for windows of " +
                      std::to_string(window) + " in both the training part and the held-out " +
                      std::to_string(static_cast<int>(o.heldout_fraction * 100)) + "% at its end");
  LensData out;
  // Held-out: windows spread evenly over [split, n − window].
  const int64_t count = o.heldout_batches * o.batch_size;
  std::vector<int64_t> starts;
  for (int64_t i = 0; i < count; ++i)
    starts.push_back(split + (count > 1 ? (n - window - split) * i / (count - 1) : 0));
  for (int64_t b = 0; b < o.heldout_batches; ++b)
    out.heldout.push_back(window_batch(
        data, std::vector<int64_t>(starts.begin() + b * o.batch_size, starts.begin() + (b + 1) * o.batch_size),
        seq_len));
  // Training: uniform starts in [0, split − window], a pure function of (seed, step).
  const TokenDataset* d = &data;
  out.train_batch = [d, split, window, seq_len, o](int64_t step) {
    at::Generator gen = at::detail::createCPUGenerator(o.seed * 1000003u + static_cast<uint64_t>(step));
    const at::Tensor s = at::randint(0, split - window + 1, {o.batch_size}, gen, at::TensorOptions(at::kLong));
    std::vector<int64_t> starts(s.data_ptr<int64_t>(), s.data_ptr<int64_t>() + o.batch_size);
    return window_batch(*d, starts, seq_len);
  };
  return out;
}

std::vector<double> lens_kl(CausalTransformer& model, const TunedLens* lens, const std::vector<Batch>& batches) {
  at::NoGradGuard no_grad;
  EvalScope frozen(*model, EvalScope::Parameters::Frozen);
  std::vector<double> sum;
  int64_t positions = 0;
  for (const auto& batch : batches) {
    const ModelTrajectory mt = capture_trajectory(model, batch.inputs.to(model->device()), Granularity::Sublayer);
    const int64_t V = mt.logits.size(-1);
    const at::Tensor logp = at::log_softmax(mt.logits.reshape({-1, V}).to(at::kDouble), -1);
    if (sum.empty()) sum.assign(mt.states.size(), 0.0);
    for (size_t k = 0; k < mt.states.size(); ++k) {
      const at::Tensor h = lens ? lens->translate(mt.names[k], mt.states[k]) : mt.states[k];
      const at::Tensor logq = at::log_softmax(model->lens_logits(h).reshape({-1, V}).to(at::kDouble), -1);
      sum[k] += kl_rows(logp, logq).sum().item<double>();
    }
    positions += logp.size(0);
  }
  for (double& s : sum) s /= static_cast<double>(std::max<int64_t>(positions, 1));
  return sum;
}

TunedLens train_tuned_lens(CausalTransformer& model, const TokenDataset& data, const LensTrainOptions& o,
                           LensReport* report, const std::function<void(int64_t, double)>& progress) {
  const ModelConfig& cfg = model->config();
  if (o.steps < 0 || o.batch_size < 1 || o.heldout_batches < 1 || !(o.lr > 0))
    throw ConfigError("lens training: steps >= 0, batch size >= 1, held-out batches >= 1 and lr > 0 are required");
  const int64_t seq_len = o.seq_len > 0 ? std::min(o.seq_len, cfg.context) : cfg.context;
  data.check_vocab(cfg.vocab_size, "the model");
  const LensData windows = lens_data(data, o, seq_len);

  // The translators as leaves on the model's device, initialised to the identity.
  const c10::Device device = model->device();
  TunedLens lens = TunedLens::identity(cfg.n_layer, cfg.d_model);
  std::vector<at::Tensor> params;
  for (auto& [site, t] : lens.translators) {
    t.weight = t.weight.to(device).set_requires_grad(true);
    t.bias = t.bias.to(device).set_requires_grad(true);
    params.push_back(t.weight);
    params.push_back(t.bias);
  }
  if (report) {
    report->sites = TunedLens::sites(cfg.n_layer);
    report->sites.push_back(site_name(Site::Final));
    report->kl_logit = lens_kl(model, nullptr, windows.heldout);
    report->heldout_positions = static_cast<int64_t>(windows.heldout.size()) * o.batch_size * seq_len;
  }

  EvalScope frozen(*model, EvalScope::Parameters::Frozen);
  torch::optim::Adam opt(params, torch::optim::AdamOptions(o.lr));
  double loss_sum = 0;
  int64_t loss_count = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    const Batch batch = windows.train_batch(step);
    ModelTrajectory mt;
    at::Tensor logp;
    {
      at::NoGradGuard no_grad;
      mt = capture_trajectory(model, batch.inputs.to(device), Granularity::Sublayer);
      logp = at::log_softmax(mt.logits.reshape({-1, mt.logits.size(-1)}), -1);
    }
    opt.zero_grad();
    at::Tensor loss = at::zeros({}, logp.options());
    for (size_t k = 0; k + 1 < mt.states.size(); ++k) {  // the last state, `final`, has no translator
      const at::Tensor logits = model->lens_logits(lens.translate(mt.names[k], mt.states[k]));
      loss = loss + kl_rows(logp, at::log_softmax(logits.reshape({-1, logits.size(-1)}), -1)).mean();
    }
    loss.backward();
    opt.step();
    loss_sum += loss.item<double>();
    ++loss_count;
    if (progress && ((step + 1) % std::max<int64_t>(o.log_every, 1) == 0 || step + 1 == o.steps)) {
      progress(step + 1, loss_sum / static_cast<double>(loss_count));
      loss_sum = 0;
      loss_count = 0;
    }
  }
  for (auto& [site, t] : lens.translators) {
    t.weight = t.weight.detach().cpu();
    t.bias = t.bias.detach().cpu();
  }
  if (report) report->kl_tuned = lens_kl(model, &lens, windows.heldout);
  return lens;
}

}  // namespace metalm
