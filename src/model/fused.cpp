#include "metalm/model/fused.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>

#include "fused_kernels.hpp"
#include "metalm/core/error.hpp"

namespace metalm {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Elements per task of at::parallel_for: below this a second thread costs
// more than it saves.
constexpr int64_t kGrainElements = 16384;

bool cpu_supports(FusedIsa isa) {
#if defined(METALM_FUSED_X86)
  __builtin_cpu_init();
  switch (isa) {
    case FusedIsa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
    case FusedIsa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    default:
      break;
  }
#endif
  return isa == FusedIsa::Generic || isa == FusedIsa::Best;
}

const fused::Kernels& kernels(FusedIsa isa) {
  if (isa == FusedIsa::Best) {
    static const FusedIsa best = fused_isas_supported().front();
    isa = best;
  }
  if (!cpu_supports(isa)) throw ShapeError("fused kernels: this CPU cannot run the " + fused_isa_name(isa) + " kernels");
#if defined(METALM_FUSED_X86)
  if (isa == FusedIsa::Avx512) return fused::avx512_kernels();
  if (isa == FusedIsa::Avx2) return fused::avx2_kernels();
#endif
  return fused::generic_kernels();
}

bool is_bf16(const at::Tensor& t) { return t.scalar_type() == at::kBFloat16; }
const fused::bf16_bits* bits(const at::Tensor& t) {
  return reinterpret_cast<const fused::bf16_bits*>(t.data_ptr<at::BFloat16>());
}
fused::bf16_bits* mutable_bits(const at::Tensor& t) {
  return reinterpret_cast<fused::bf16_bits*>(t.data_ptr<at::BFloat16>());
}

void check_applies(const at::Tensor& t, const char* what) {
  if (!fused_kernels_apply(t))
    throw ShapeError(std::string(what) + ": a float32 or bfloat16 CPU tensor, not " +
                     std::string(c10::toString(t.scalar_type())) + " on " + t.device().str());
}

// ---- bias + GELU -------------------------------------------------------------

const float* bias_data(const at::Tensor& bias) { return bias.defined() ? bias.data_ptr<float>() : nullptr; }

at::Tensor gelu_forward(const at::Tensor& y, const at::Tensor& bias, const fused::Kernels& k) {
  at::Tensor out = at::empty_like(y);
  if (y.numel() == 0) return out;
  const int64_t cols = y.size(-1), rows = y.numel() / cols;
  const float* b = bias_data(bias);
  at::parallel_for(0, rows, std::max<int64_t>(1, kGrainElements / cols), [&](int64_t begin, int64_t end) {
    const int64_t at = begin * cols;
    if (is_bf16(y))
      k.gelu_forward_bf16(bits(y) + at, b, mutable_bits(out) + at, end - begin, cols);
    else
      k.gelu_forward_f32(y.data_ptr<float>() + at, b, out.data_ptr<float>() + at, end - begin, cols);
  });
  return out;
}

// grad_in = grad * gelu'(y + bias), and the bias gradient (the column sums
// of grad_in, in fp32) when the bias is defined. The rows are split into a
// fixed number of blocks, each summing into its own row of partial sums, so
// the result depends neither on the number of threads nor on their schedule.
constexpr int64_t kSumBlocks = 8;

std::pair<at::Tensor, at::Tensor> gelu_backward(const at::Tensor& grad, const at::Tensor& y, const at::Tensor& bias,
                                                const fused::Kernels& k) {
  at::Tensor grad_in = at::empty_like(y);
  at::Tensor grad_bias = bias.defined() ? at::zeros_like(bias) : at::Tensor();
  if (y.numel() == 0) return {grad_in, grad_bias};
  const int64_t cols = y.size(-1), rows = y.numel() / cols;
  const int64_t blocks = std::min(kSumBlocks, rows);
  at::Tensor partial = bias.defined() ? at::zeros({blocks, cols}, bias.options()) : at::Tensor();
  const float* b = bias_data(bias);
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t r0 = rows * blk / blocks, r1 = rows * (blk + 1) / blocks, at = r0 * cols;
      float* sums = partial.defined() ? partial.data_ptr<float>() + blk * cols : nullptr;
      if (is_bf16(y))
        k.gelu_backward_bf16(bits(grad) + at, bits(y) + at, b, mutable_bits(grad_in) + at, sums, r1 - r0, cols);
      else
        k.gelu_backward_f32(grad.data_ptr<float>() + at, y.data_ptr<float>() + at, b, grad_in.data_ptr<float>() + at,
                            sums, r1 - r0, cols);
    }
  });
  if (partial.defined()) grad_bias = partial.sum(0);
  return {grad_in, grad_bias};
}

// LibTorch 1.13's custom functions take no undefined tensor as an input, so
// the GELU without a bias is a function of its own.
struct BiasGelu : torch::autograd::Function<BiasGelu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, const at::Tensor& bias, int64_t isa) {
    ctx->saved_data["isa"] = isa;
    ctx->save_for_backward({y, bias});
    return gelu_forward(y, bias, kernels(static_cast<FusedIsa>(isa)));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    auto [grad, grad_bias] = gelu_backward(grads[0].to(saved[0].scalar_type()).contiguous(), saved[0], saved[1],
                                           kernels(static_cast<FusedIsa>(ctx->saved_data["isa"].toInt())));
    return {grad, grad_bias, at::Tensor()};
  }
};

struct Gelu : torch::autograd::Function<Gelu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& y, int64_t isa) {
    ctx->saved_data["isa"] = isa;
    ctx->save_for_backward({y});
    return gelu_forward(y, at::Tensor(), kernels(static_cast<FusedIsa>(isa)));
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor y = ctx->get_saved_variables()[0];
    return {gelu_backward(grads[0].to(y.scalar_type()).contiguous(), y, at::Tensor(),
                          kernels(static_cast<FusedIsa>(ctx->saved_data["isa"].toInt())))
                .first,
            at::Tensor()};
  }
};

// ---- causal softmax ------------------------------------------------------------

at::Tensor softmax_forward(const at::Tensor& s, double scale, int64_t offset, const fused::Kernels& k) {
  at::Tensor p = at::empty_like(s);
  const int64_t T = s.size(1), S = s.size(2);
  if (s.numel() == 0) return p;
  const auto fscale = static_cast<float>(scale);
  at::parallel_for(0, s.size(0) * T, std::max<int64_t>(1, kGrainElements / S), [&](int64_t begin, int64_t end) {
    std::vector<float> scratch(static_cast<size_t>(S));
    if (is_bf16(s))
      k.softmax_forward_bf16(bits(s), mutable_bits(p), begin, end, T, S, offset, fscale, scratch.data());
    else
      k.softmax_forward_f32(s.data_ptr<float>(), p.data_ptr<float>(), begin, end, T, S, offset, fscale,
                            scratch.data());
  });
  return p;
}

at::Tensor softmax_backward(const at::Tensor& grad, const at::Tensor& p, double scale, int64_t offset,
                            const fused::Kernels& k) {
  at::Tensor grad_s = at::empty_like(p);
  const int64_t T = p.size(1), S = p.size(2);
  if (p.numel() == 0) return grad_s;
  const auto fscale = static_cast<float>(scale);
  at::parallel_for(0, p.size(0) * T, std::max<int64_t>(1, kGrainElements / S), [&](int64_t begin, int64_t end) {
    if (is_bf16(p))
      k.softmax_backward_bf16(bits(grad), bits(p), mutable_bits(grad_s), begin, end, T, S, offset, fscale);
    else
      k.softmax_backward_f32(grad.data_ptr<float>(), p.data_ptr<float>(), grad_s.data_ptr<float>(), begin, end, T, S,
                             offset, fscale);
  });
  return grad_s;
}

struct CausalSoftmax : torch::autograd::Function<CausalSoftmax> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& scores, double scale, int64_t offset,
                            int64_t isa) {
    const fused::Kernels& k = kernels(static_cast<FusedIsa>(isa));
    at::Tensor p = softmax_forward(scores, scale, offset, k);
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["isa"] = isa;
    ctx->save_for_backward({p});
    return p;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor p = ctx->get_saved_variables()[0];
    const at::Tensor grad =
        softmax_backward(grads[0].to(p.scalar_type()).contiguous(), p, ctx->saved_data["scale"].toDouble(),
                         ctx->saved_data["offset"].toInt(), kernels(static_cast<FusedIsa>(ctx->saved_data["isa"].toInt())));
    return {grad, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::vector<FusedIsa> fused_isas_supported() {
  std::vector<FusedIsa> out;
  for (FusedIsa isa : {FusedIsa::Avx512, FusedIsa::Avx2})
    if (cpu_supports(isa)) out.push_back(isa);
  out.push_back(FusedIsa::Generic);
  return out;
}

std::string fused_isa_name(FusedIsa isa) {
  switch (isa) {
    case FusedIsa::Best: return fused_isa_name(fused_isas_supported().front());
    case FusedIsa::Avx512: return "avx512";
    case FusedIsa::Avx2: return "avx2";
    case FusedIsa::Generic: break;
  }
  return "generic";
}

bool fused_kernels_apply(const at::Tensor& t) {
  return t.defined() && t.is_cpu() && (t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16);
}

at::Tensor bias_gelu(const at::Tensor& y, const at::Tensor& bias, FusedIsa isa) {
  check_applies(y, "bias_gelu: y");
  if (y.dim() == 0) throw ShapeError("bias_gelu: y needs a last dimension, got a scalar");
  if (bias.defined() && (bias.scalar_type() != at::kFloat || !bias.is_cpu() || bias.dim() != 1 ||
                         bias.size(0) != y.size(-1)))
    throw ShapeError("bias_gelu: bias must be float32 [" + std::to_string(y.size(-1)) + "] on the CPU, got " +
                     std::string(c10::toString(bias.scalar_type())) + " " + c10::str(bias.sizes()));
  kernels(isa);  // an instruction set this CPU lacks fails here, not in backward
  if (!bias.defined()) return Gelu::apply(y.contiguous(), static_cast<int64_t>(isa));
  return BiasGelu::apply(y.contiguous(), bias.contiguous(), static_cast<int64_t>(isa));
}

at::Tensor causal_softmax(const at::Tensor& scores, double scale, int64_t offset, FusedIsa isa) {
  check_applies(scores, "causal_softmax: scores");
  if (scores.dim() != 3) throw ShapeError("causal_softmax: scores must be [N, T, S], got " + c10::str(scores.sizes()));
  if (offset < 0) throw ShapeError("causal_softmax: offset must be >= 0, got " + std::to_string(offset));
  kernels(isa);
  return CausalSoftmax::apply(scores.contiguous(), scale, offset, static_cast<int64_t>(isa));
}

}  // namespace metalm
