#include "blas_kernel.hpp"

#include <cstdlib>
#include <string>

#include "metalm/core/cpu.hpp"

namespace metalm::cli {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// The variable as the user set it: a value an enclosing metalm set (one
// command running another, e.g. distributed ranks) is metalm's own, decided
// again here.
std::string user_value(const char* name, const char* choice_env) {
  KernelChoice inherited;
  if (parse_choice(env(choice_env), inherited) && inherited.set_by == SetBy::Metalm &&
      inherited.value == env(name)) {
    ::unsetenv(name);
    return "";
  }
  return env(name);
}

// The kernel OpenBLAS picks by itself: OPENBLAS_CORETYPE is hidden from it
// while it loads, and it starts no thread pool (this process execs next).
std::string detect_blas_kernel() {
  const std::string coretype = env("OPENBLAS_CORETYPE"), threads = env("OPENBLAS_NUM_THREADS");
  ::unsetenv("OPENBLAS_CORETYPE");
  ::setenv("OPENBLAS_NUM_THREADS", "1", 1);
  const BlasLibrary lib = probe_blas_library();
  if (!coretype.empty()) ::setenv("OPENBLAS_CORETYPE", coretype.c_str(), 1);
  if (threads.empty()) ::unsetenv("OPENBLAS_NUM_THREADS");
  else ::setenv("OPENBLAS_NUM_THREADS", threads.c_str(), 1);
  return lib.corename;
}

void apply(const char* name, const char* choice_env, const KernelChoice& choice) {
  if (choice.set_by == SetBy::Metalm) ::setenv(name, choice.value.c_str(), 1);
  ::setenv(choice_env, format_choice(choice).c_str(), 1);
}

}  // namespace

void choose_kernels_for_child() {
  const IsaLevel isa = isa_level(cpu_info());
  const std::string blas_user = user_value("OPENBLAS_CORETYPE", kBlasKernelChoiceEnv);
  const std::string aten_user = user_value("ATEN_CPU_CAPABILITY", kAtenCapabilityChoiceEnv);
  const std::string detected = detect_blas_kernel();
  ::setenv(kBlasKernelDetectedEnv, detected.c_str(), 1);
  apply("OPENBLAS_CORETYPE", kBlasKernelChoiceEnv, choose_blas_kernel(detected, blas_user, isa));
  apply("ATEN_CPU_CAPABILITY", kAtenCapabilityChoiceEnv, choose_aten_capability(aten_user, isa, kPreferAvx512Aten));
}

}  // namespace metalm::cli
