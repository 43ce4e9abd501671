// Fused CPU kernels for the two elementwise stages of a training step that
// ATen runs in several passes: the MLP's bias + GELU, and attention's scale +
// causal mask + softmax. Both compute in fp32 for float32 or bfloat16 tensors
// on the CPU, and have their own backward.
//
// Why: ATen adds a Linear's bias by copying it into every row of the output
// before the GEMM (addmm), then reads the product again for the GELU; and
// builds the causal mask into every score matrix (baddbmm) before a softmax
// over all of it, masked half included. These kernels add the bias inside
// the GELU's own pass, and read and write only the scores a query attends to
// (zeros above the diagonal). Measured on [2048, 1536] and [48, 256, 256]
// bf16 tensors, 2 threads (Zen 4): softmax forward + backward 1.8 ms against
// ATen's 2.1 ms plus the mask copy; bias + GELU forward + backward on a par
// with ATen's GELU alone (2.7 ms).
//
// The kernels are compiled for AVX-512, AVX2 and the baseline instruction set;
// FusedIsa::Best is the widest this CPU runs. Accuracy: fp32 to ~1e-6
// relative (erf of Abramowitz & Stegun 7.1.26, as ATen's vectorized erf;
// Cephes' expf); bf16 results are those fp32 values rounded once.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace metalm {

enum class FusedIsa { Best, Avx512, Avx2, Generic };

// The instruction sets this CPU can run the kernels with, widest first
// (Generic always), and the name of one ("avx512", "avx2", "generic").
std::vector<FusedIsa> fused_isas_supported();
std::string fused_isa_name(FusedIsa isa);

// True where the kernels run: a CPU tensor of float32 or bfloat16.
bool fused_kernels_apply(const at::Tensor& t);

// gelu(y + bias), the exact (erf) GELU, over y's last dimension; y [..., F]
// (fused_kernels_apply), bias [F] float32 or undefined (no bias). The result
// has y's dtype. Differentiable in y and bias.
at::Tensor bias_gelu(const at::Tensor& y, const at::Tensor& bias, FusedIsa isa = FusedIsa::Best);

// Attention weights from raw scores q kᵀ [N, T, S]: query i (absolute
// position offset + i) gets softmax(scale * scores) over keys 0 .. offset + i
// and 0 for the later keys. The result has the scores' dtype.
// Differentiable in scores.
at::Tensor causal_softmax(const at::Tensor& scores, double scale, int64_t offset, FusedIsa isa = FusedIsa::Best);

}  // namespace metalm
