// Raw CPU kernels behind model/fused.hpp: the exact GELU with its bias added
// in the same pass, and the causal softmax that reads and writes only the
// scores a query may attend to. Pointers to contiguous rows; bf16 values are
// passed as their 16 bits (uint16_t) and computed in fp32.
//
// This header includes no torch header on purpose: the kernels are compiled
// once per instruction set (fused_kernels_<isa>.cpp, each with its own -m
// flags) and must not instantiate any shared inline code with those flags.
// fused.cpp picks one table at run time from what the CPU supports.
#pragma once

#include <cstdint>

namespace metalm::fused {

using bf16_bits = uint16_t;

// One instruction set's kernels. Rows are independent: callers split rows
// across threads.
struct Kernels {
  const char* isa;  // "avx512", "avx2" or "generic"

  // out = gelu(y + bias) over rows x cols; bias [cols] (nullptr: none).
  void (*gelu_forward_f32)(const float* y, const float* bias, float* out, int64_t rows, int64_t cols);
  void (*gelu_forward_bf16)(const bf16_bits* y, const float* bias, bf16_bits* out, int64_t rows, int64_t cols);
  // grad_in = grad * gelu'(y + bias); bias_grad [cols] (nullptr: none)
  // accumulates the column sums of grad_in in fp32.
  void (*gelu_backward_f32)(const float* grad, const float* y, const float* bias, float* grad_in, float* bias_grad,
                            int64_t rows, int64_t cols);
  void (*gelu_backward_bf16)(const bf16_bits* grad, const bf16_bits* y, const float* bias, bf16_bits* grad_in,
                             float* bias_grad, int64_t rows, int64_t cols);

  // Rows [row_begin, row_end) of scores [N*T, S]; row r is query i = r % T at
  // absolute position offset + i, which attends to keys 0 .. offset + i:
  // p = softmax(scale * s) over those keys, 0 beyond. scratch: S floats.
  void (*softmax_forward_f32)(const float* s, float* p, int64_t row_begin, int64_t row_end, int64_t T, int64_t S,
                              int64_t offset, float scale, float* scratch);
  void (*softmax_forward_bf16)(const bf16_bits* s, bf16_bits* p, int64_t row_begin, int64_t row_end, int64_t T,
                               int64_t S, int64_t offset, float scale, float* scratch);
  // grad_s = scale * p * (grad - sum_j grad_j p_j), 0 beyond the attended keys.
  void (*softmax_backward_f32)(const float* grad, const float* p, float* grad_s, int64_t row_begin, int64_t row_end,
                               int64_t T, int64_t S, int64_t offset, float scale);
  void (*softmax_backward_bf16)(const bf16_bits* grad, const bf16_bits* p, bf16_bits* grad_s, int64_t row_begin,
                                int64_t row_end, int64_t T, int64_t S, int64_t offset, float scale);
};

const Kernels& generic_kernels();
#if defined(METALM_FUSED_X86)
const Kernels& avx2_kernels();    // needs avx2 and fma
const Kernels& avx512_kernels();  // needs avx512f, avx512bw, avx512vl, avx512dq and fma
#endif

}  // namespace metalm::fused
