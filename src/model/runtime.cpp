#include "metalm/model/runtime.hpp"

#include <ATen/Version.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>

namespace metalm {

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

// at::native::get_cpu_capability is not exported by libtorch 1.13; its
// build summary states the capability in force ("CPU capability usage: AVX2").
std::string aten_capability_in_force() {
  const std::string config = at::show_config();
  const std::string label = "CPU capability usage: ";
  const std::size_t pos = config.find(label);
  if (pos == std::string::npos) return "unknown";
  std::string value = config.substr(pos + label.size(), config.find('\n', pos) - pos - label.size());
  std::transform(value.begin(), value.end(), value.begin(), [](unsigned char c) { return std::tolower(c); });
  return value;
}

// The launcher's record of a choice, or (metalm-tensor run directly) the
// user's when the variable is set, else the library's.
KernelChoice recorded_choice(const char* record_env, const char* variable) {
  KernelChoice choice;
  if (parse_choice(env(record_env), choice)) return choice;
  if (const std::string user = env(variable); !user.empty())
    return {"", SetBy::User, std::string(variable) + "=" + user + " set by the user"};
  return {"", SetBy::Library, "the library's own pick"};
}

}  // namespace

const RuntimeKernels& runtime_kernels() {
  static const RuntimeKernels k = [] {
    RuntimeKernels r;
    r.cpu = cpu_info().model;
    r.isa = to_string(isa_level(cpu_info()));
    const BlasLibrary lib = probe_blas_library();
    r.blas_library = lib.path;
    r.blas_config = lib.config;
    r.blas_kernel = lib.corename;
    r.blas_kernel_detected = env(kBlasKernelDetectedEnv);
    r.blas_choice = recorded_choice(kBlasKernelChoiceEnv, "OPENBLAS_CORETYPE");
    r.aten_capability = aten_capability_in_force();
    r.aten_choice = recorded_choice(kAtenCapabilityChoiceEnv, "ATEN_CPU_CAPABILITY");
    return r;
  }();
  return k;
}

nlohmann::json to_json(const RuntimeKernels& k) {
  return {{"cpu", k.cpu},
          {"isa", k.isa},
          {"blas",
           {{"library", k.blas_library},
            {"config", k.blas_config},
            {"kernel", k.blas_kernel},
            {"kernel_detected", k.blas_kernel_detected},
            {"kernel_set_by", to_string(k.blas_choice.set_by)},
            {"kernel_reason", k.blas_choice.reason}}},
          {"aten_capability", k.aten_capability},
          {"aten_capability_set_by", to_string(k.aten_choice.set_by)},
          {"aten_capability_reason", k.aten_choice.reason}};
}

void log_runtime_kernels_once() {
  static std::atomic<bool> logged{false};
  if (logged.exchange(true)) return;
  const RuntimeKernels& k = runtime_kernels();
  const std::string blas = k.blas_kernel.empty() ? "BLAS " + k.blas_library : "OpenBLAS kernel " + k.blas_kernel;
  spdlog::info("{} ({}), ATen capability {} ({})", blas, k.blas_choice.reason, k.aten_capability,
               k.aten_choice.reason);
}

}  // namespace metalm
