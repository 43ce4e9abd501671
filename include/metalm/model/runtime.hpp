// What this process's arithmetic runs on: the BLAS library libtorch calls and
// the kernel OpenBLAS uses, ATen's CPU capability, and who chose each (the
// library itself, the user's environment, or the metalm launcher:
// metalm/core/cpu.hpp). Recorded in every run's config.json and every
// benchmark's JSON, so that figures from different machines can be told apart.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

#include "metalm/core/cpu.hpp"

namespace metalm {

struct RuntimeKernels {
  std::string cpu;                   // /proc/cpuinfo's model name
  std::string isa;                   // to_string(isa_level(cpu_info()))
  std::string blas_library;          // the file libblas.so.3 resolves to
  std::string blas_config;           // openblas_get_config() ("" when not OpenBLAS)
  std::string blas_kernel;           // the kernel in force in this process
  std::string blas_kernel_detected;  // OpenBLAS's own pick, as the launcher found it ("" when not known)
  KernelChoice blas_choice;          // who set OPENBLAS_CORETYPE, and why
  std::string aten_capability;       // ATen's CPU capability in force: default | avx2 | avx512
  KernelChoice aten_choice;          // who set ATEN_CPU_CAPABILITY, and why
};

// This process's, read once. Where metalm-tensor runs without the launcher
// (no METALM_* record in the environment), a variable that is set counts as
// the user's and OpenBLAS's own pick is unknown.
const RuntimeKernels& runtime_kernels();

// {"cpu", "isa", "blas": {"library", "config", "kernel", "kernel_detected",
//  "kernel_set_by", "kernel_reason"}, "aten_capability", "aten_capability_set_by",
//  "aten_capability_reason"}
nlohmann::json to_json(const RuntimeKernels& k);

// One info line with the kernel and capability in force and who chose them,
// the first time it is called in a process (a warning when metalm overrode
// OpenBLAS's pick, so the change is never silent).
void log_runtime_kernels_once();

}  // namespace metalm
