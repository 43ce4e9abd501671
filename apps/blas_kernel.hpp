// The launcher's part of the kernel choice (metalm/core/cpu.hpp): it finds
// which kernel OpenBLAS would pick by itself, sets OPENBLAS_CORETYPE (and,
// where enabled, ATEN_CPU_CAPABILITY) for metalm-tensor unless the user set
// it, and leaves the record of what it decided in the environment
// (kBlasKernelDetectedEnv, kBlasKernelChoiceEnv, kAtenCapabilityChoiceEnv).
#pragma once

namespace metalm::cli {

// Call just before exec'ing metalm-tensor, which loads OpenBLAS and ATen and
// so reads these variables once.
void choose_kernels_for_child();

}  // namespace metalm::cli
