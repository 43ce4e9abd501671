// The fused kernels compiled for avx512; flags: -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma (CMakeLists.txt).
#define METALM_FUSED_ENTRY avx512_kernels
#define METALM_FUSED_ISA_NAME "avx512"
#include "fused_kernels_impl.inc"
