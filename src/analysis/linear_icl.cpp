// In-context linear regression solved by one linear self-attention layer.
//
// Tokens e_i = (x_i, y_i) ∈ R^{d_x + d_y} for i = 1..N, with y_i = W* x_i, and a
// query e_q = (x_q, 0). Gradient descent on L(W) = 1/(2N) Σ ‖W x_i − y_i‖²:
//   ∇L(W) = (1/N) Σ (W x_i − y_i) x_iᵀ, so from W_0 = 0 one step of size η gives
//   W_1 = −η ∇L(0) = (η/N) Σ y_i x_iᵀ and the prediction ŷ_q = W_1 x_q.
//
// The layer: W_K = W_Q select the x part, W_V selects the y part, P = η I, and
// the sum is scaled by 1/N. For the query,
//   Δe_q = (η/N) Σ_i (W_V e_i)(W_K e_i)ᵀ(W_Q e_q) = (0, (η/N) Σ_i y_i x_iᵀ x_q) = (0, W_1 x_q)
// (the query's own term vanishes because its y part is 0). So the layer writes
// exactly the one-step GD prediction into the query's y-slot.
//
// Which inner objective is this a gradient step on? Take the state's y-slot as
// its prediction and ℓ(h) = ½ ‖h_y − y_q‖² (a squared loss of the y-slot readout
// against the query's target). At h = e_q, h_y = 0, so −∇ℓ = (0, y_q) = (0, W* x_q).
// The update is (0, W* Σ̂ x_q) with the empirical covariance Σ̂ = (1/N) Σ x_i x_iᵀ:
//   Δ = η (0, W* Σ̂ x_q)   versus   −η ∇ℓ = η (0, W* x_q).
// For x_i ~ N(0, I), Σ̂ → I as N grows (fluctuations O(√(d_x/N))), hence
// cos(Δ, −∇ℓ) → 1 and the least-squares step size ⟨Δ, −∇ℓ⟩ / ‖∇ℓ‖² → η
// (it is unbiased: E[Σ̂] = I). The analyser must recover both; with small N
// the alignment is visibly below 1 and grows with N.
#include "metalm/analysis/linear_icl.hpp"

#include <ATen/CPUGeneratorImpl.h>


#include "metalm/analysis/summary.hpp"
#include "metalm/core/error.hpp"

namespace metalm {
namespace {

const auto kF64 = at::TensorOptions(at::kDouble);

// [D, D] with the identity on rows/cols [begin, begin+len) and zeros elsewhere.
at::Tensor block_identity(int64_t dim, int64_t begin, int64_t len) {
  at::Tensor m = at::zeros({dim, dim}, kF64);
  m.narrow(0, begin, len).narrow(1, begin, len).copy_(at::eye(len, kF64));
  return m;
}

void check(const LinearIclOptions& o) {
  if (o.n < 1) throw ConfigError("synthetic-icl: n must be at least 1, got " + std::to_string(o.n));
  if (o.d_x < 1) throw ConfigError("synthetic-icl: d_x must be at least 1, got " + std::to_string(o.d_x));
  if (o.d_y < 0) throw ConfigError("synthetic-icl: d_y must be >= 0, got " + std::to_string(o.d_y));
  if (o.batch < 1) throw ConfigError("synthetic-icl: batch must be at least 1, got " + std::to_string(o.batch));
  if (!(o.eta > 0)) throw ConfigError("synthetic-icl: eta must be positive");
}

}  // namespace

LinearAttentionWeights gd_step_weights(int64_t d_x, int64_t d_y, double eta, int64_t n) {
  const int64_t dim = d_x + d_y;
  LinearAttentionWeights w;
  w.wq = block_identity(dim, 0, d_x);
  w.wk = block_identity(dim, 0, d_x);
  w.wv = block_identity(dim, d_x, d_y);
  w.proj = eta * at::eye(dim, kF64);
  w.scale = static_cast<double>(n);
  return w;
}

at::Tensor linear_self_attention(const at::Tensor& e, const LinearAttentionWeights& w) {
  if (e.dim() != 3 || e.size(2) != w.wq.size(0)) throw ShapeError("linear_self_attention: expected e [B, T, D] with D = weights' width");
  const at::Tensor q = at::matmul(e, w.wq.t());  // [B, T, D]
  const at::Tensor k = at::matmul(e, w.wk.t());  // [B, T, D]
  const at::Tensor v = at::matmul(e, w.wv.t());  // [B, T, D]
  // Chunked causal linear attention: within a chunk of C positions the masked
  // scores (q_j·k_i, i ≤ j) are a small matrix; across chunks a running state
  // S = Σ v_i k_iᵀ carries the past. Same result as the O(T²) form, in O(T C + T D²).
  const int64_t B = e.size(0), T = e.size(1), D = e.size(2), C = 16;
  const int64_t nc = (T + C - 1) / C, pad = nc * C - T;
  auto chunks = [&](const at::Tensor& t) {  // [B, T, D] -> [B, nc, C, D] (zero-padded)
    return at::constant_pad_nd(t, {0, 0, 0, pad}).reshape({B, nc, C, D});
  };
  const at::Tensor qc = chunks(q), kc = chunks(k), vc = chunks(v);
  const at::Tensor causal = at::ones({C, C}, e.options()).tril();                 // [C, C], i ≤ j
  const at::Tensor scores = at::matmul(qc, kc.transpose(2, 3)) * causal;          // [B, nc, C(j), C(i)]
  const at::Tensor intra = at::matmul(scores, vc);                                 // [B, nc, C, D]
  const at::Tensor state = at::matmul(vc.transpose(2, 3), kc);                     // Σ_chunk v kᵀ: [B, nc, D, D]
  const at::Tensor past = at::cumsum(state, 1) - state;                            // chunks before: [B, nc, D, D]
  const at::Tensor inter = at::matmul(qc, past.transpose(2, 3));                   // (S q_j)ᵀ = q_jᵀ Sᵀ: [B, nc, C, D]
  const at::Tensor attn = (intra + inter).reshape({B, nc * C, D}).narrow(1, 0, T) / w.scale;  // [B, T, D]
  return e + at::matmul(attn, w.proj.t());
}

LinearIclSetting make_linear_icl(const LinearIclOptions& opts) {
  check(opts);
  const int64_t d_y = opts.d_y ? opts.d_y : opts.d_x;
  const int64_t B = opts.batch, N = opts.n, T = N + 1, D = opts.d_x + d_y;
  at::Generator gen = at::detail::createCPUGenerator(opts.seed);
  const at::Tensor w_star = at::normal(0.0, 1.0, {B, d_y, opts.d_x}, gen, kF64);  // one task per sequence
  const at::Tensor x = at::normal(0.0, 1.0, {B, T, opts.d_x}, gen, kF64);          // x_1..x_N, x_q
  const at::Tensor y = at::matmul(x, w_star.transpose(1, 2));                      // [B, T, d_y]
  at::Tensor before = at::cat({x, y}, 2);                                           // [B, T, D]
  before.select(1, N).narrow(1, opts.d_x, d_y).zero_();                             // the query's y is unknown

  LinearIclSetting s;
  s.before = before;
  s.after = linear_self_attention(before, gd_step_weights(opts.d_x, d_y, opts.eta, N));
  // ℓ(h) = ½ ‖R h − y_q‖² at the query only, with R reading the y-slot.
  const at::Tensor readout = at::eye(D, kF64).narrow(0, opts.d_x, d_y);  // [d_y, D]
  at::Tensor valid = at::zeros({B, T}, at::TensorOptions(at::kBool));
  valid.select(1, N).fill_(true);
  s.objective = std::make_shared<SquaredLossObjective>(readout, y, valid);
  return s;
}

nlohmann::json linear_icl_point(const LinearIclOptions& opts) {
  const LinearIclSetting s = make_linear_icl(opts);
  AnalysisConfig analysis;
  analysis.seed = static_cast<int64_t>(opts.seed + 1);  // the control's seed, modulo 2^64
  const Trajectory tr = analyze_trajectory({s.before, s.after}, {"tokens", "attn_out"}, *s.objective, analysis);
  const StepRecord& st = tr.steps.at(0);
  return {{"n", opts.n},
          {"alignment", to_json(summarize(st.alignment))},
          {"alignment_uniform", to_json(summarize(st.alignment_uniform))},
          {"step_size", to_json(summarize(st.step_size))},
          {"loss_before", number(summarize(st.loss_before).mean)},
          {"loss_after", number(summarize(st.loss_after).mean)}};
}

nlohmann::json linear_icl_sweep(const std::vector<int64_t>& ns, LinearIclOptions opts) {
  if (ns.empty()) throw ConfigError("synthetic-icl: --n needs at least one context size");
  check(opts);
  const uint64_t seed = opts.seed;
  nlohmann::json points = nlohmann::json::array();
  for (int64_t n : ns) {
    opts.n = n;
    // Each context size gets its own stream, reproducible on its own.
    opts.seed = seed * 1000003ULL + static_cast<uint64_t>(n);
    points.push_back(linear_icl_point(opts));
  }
  return {{"setting", "linear_icl"},
          {"d_x", opts.d_x},
          {"d_y", opts.d_y ? opts.d_y : opts.d_x},
          {"eta", opts.eta},
          {"batch", opts.batch},
          {"seed", seed},
          {"points", points}};
}

}  // namespace metalm
