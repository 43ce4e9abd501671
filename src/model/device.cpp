#include "metalm/model/device.hpp"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>

#include <fstream>
#include <sstream>
#include <string>

#include "metalm/core/error.hpp"

namespace metalm {

c10::Device resolve_device(DeviceKind kind, const std::string& what) {
  switch (kind) {
    case DeviceKind::Cpu:
      return c10::Device(c10::kCPU);
    case DeviceKind::Cuda:
      if (!torch::cuda::is_available())
        throw ConfigError(what + " = cuda: this libtorch has no usable CUDA device (built without CUDA, or no GPU "
                                 "visible); use cpu or auto");
      return c10::Device(c10::kCUDA, 0);
    case DeviceKind::Auto:
      break;
  }
  return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
}

std::string device_label(const c10::Device& device) { return device.str(); }

bool native_bf16(const c10::Device& device) {
  if (device.is_cuda()) return true;
  static const bool cpu = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream flags(line.substr(line.find(':') + 1));
      std::string flag;
      while (flags >> flag)
        if (flag == "avx512_bf16" || flag == "amx_bf16") return true;
      return false;  // every core lists the same flags
    }
    return false;  // no /proc/cpuinfo: not known to be native
  }();
  return cpu;
}

Precision resolve_precision(Precision precision, const c10::Device& device) {
  if (precision != Precision::Auto) return precision;
  return native_bf16(device) ? Precision::Bf16 : Precision::Fp32;
}

AutocastScope::AutocastScope(Precision precision, const c10::Device& device) {
  if (resolve_precision(precision, device) != Precision::Bf16) return;
  active_ = true;
  was_cpu_ = at::autocast::is_cpu_enabled();
  was_gpu_ = at::autocast::is_enabled();
  if (device.is_cuda()) {
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  // Nesting lets autocast cache each weight's bf16 copy for the whole
  // forward pass (a tied embedding is cast once, not once per use).
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_cpu_enabled(was_cpu_);
  at::autocast::set_enabled(was_gpu_);
}

FullPrecisionScope::FullPrecisionScope()
    : was_cpu_(at::autocast::is_cpu_enabled()), was_gpu_(at::autocast::is_enabled()) {
  at::autocast::set_cpu_enabled(false);
  at::autocast::set_enabled(false);
}

FullPrecisionScope::~FullPrecisionScope() {
  at::autocast::set_cpu_enabled(was_cpu_);
  at::autocast::set_enabled(was_gpu_);
}

}  // namespace metalm
