// The fused kernels compiled for avx2; flags: -mavx2 -mfma (CMakeLists.txt).
#define METALM_FUSED_ENTRY avx2_kernels
#define METALM_FUSED_ISA_NAME "avx2"
#include "fused_kernels_impl.inc"
