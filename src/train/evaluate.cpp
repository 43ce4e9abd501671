#include "metalm/train/evaluate.hpp"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "metalm/core/error.hpp"
#include "metalm/model/eval_scope.hpp"

namespace metalm {
namespace {

// Summed CE (double) of logits [N, V] against targets [N].
double summed_ce(const at::Tensor& logits, const at::Tensor& targets) {
  return at::cross_entropy_loss(logits.to(at::kFloat), targets, {}, at::Reduction::Sum).item<double>();
}

}  // namespace

double EvalResult::perplexity() const { return std::exp(loss); }

double EvalResult::bits_per_byte(double bytes_per_token) const {
  return bytes_per_token > 0 ? loss / std::log(2.0) / bytes_per_token : std::nan("");
}

EvalResult evaluate_batches(CausalTransformer& model, const std::vector<Batch>& batches, Precision precision) {
  EvalScope eval(*model);
  at::NoGradGuard no_grad;
  double sum = 0;
  int64_t count = 0;
  const c10::Device device = model->device();
  for (const auto& b : batches) {
    const at::Tensor logits = forward_logits(model, b.inputs, precision);  // [B, T, V]
    sum += summed_ce(logits.reshape({-1, logits.size(-1)}), b.targets.to(device).reshape({-1}));
    count += b.targets.numel();
  }
  return {count ? sum / static_cast<double>(count) : std::nan(""), count};
}

EvalResult evaluate_tokens(CausalTransformer& model, const std::vector<int64_t>& ids, int64_t stride,
                           int64_t batch, Precision precision) {
  const int64_t context = model->config().context;
  const int64_t n = static_cast<int64_t>(ids.size());
  if (stride == 0) stride = context;
  if (stride < 1 || stride > context)
    throw ShapeError("evaluation stride " + std::to_string(stride) + " must be in [1, context = " +
                     std::to_string(context) + "]");
  if (n < 2) throw ShapeError("evaluation needs at least 2 tokens (got " + std::to_string(n) + ")");
  batch = std::max<int64_t>(1, batch);

  // Windows: inputs ids[begin, end), targets ids[begin+1, end+1), scored from
  // input position `first` on (targets index > previous window's end).
  struct Window {
    int64_t begin, end, first;
  };
  std::vector<Window> windows;
  for (int64_t begin = 0, scored_end = 0;; begin += stride) {
    const int64_t end = std::min(begin + context, n - 1);
    windows.push_back({begin, end, scored_end - begin});
    scored_end = end;
    if (end == n - 1) break;
  }

  EvalScope eval(*model);
  at::NoGradGuard no_grad;
  const c10::Device device = model->device();
  const at::Tensor all = at::tensor(ids, at::kLong).to(device);  // [n]
  double sum = 0;
  int64_t count = 0;
  // Windows of equal length run together; only the last one can be shorter.
  for (std::size_t w = 0; w < windows.size();) {
    const int64_t len = windows[w].end - windows[w].begin;
    std::vector<at::Tensor> inputs, targets;
    std::vector<int64_t> firsts;
    for (; w < windows.size() && static_cast<int64_t>(inputs.size()) < batch &&
           windows[w].end - windows[w].begin == len;
         ++w) {
      inputs.push_back(all.slice(0, windows[w].begin, windows[w].end));
      targets.push_back(all.slice(0, windows[w].begin + 1, windows[w].end + 1));
      firsts.push_back(windows[w].first);
    }
    const at::Tensor logits = forward_logits(model, at::stack(inputs), precision);  // [b, len, V]
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const int64_t first = firsts[i];
      sum += summed_ce(logits[static_cast<int64_t>(i)].slice(0, first), targets[i].slice(0, first));
      count += len - first;
    }
  }
  return {sum / static_cast<double>(count), count};
}

}  // namespace metalm
