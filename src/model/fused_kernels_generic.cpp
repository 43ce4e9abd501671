// The fused kernels compiled for generic; flags: (none: the compiler's baseline, SSE2 on x86-64) (CMakeLists.txt).
#define METALM_FUSED_ENTRY generic_kernels
#define METALM_FUSED_ISA_NAME "generic"
#include "fused_kernels_impl.inc"
