// Where the model's tensors live and in which arithmetic its matmuls run.
//
// Device: `auto` picks CUDA when this libtorch was built with it and a GPU is
// visible, else the CPU. Asking for `cuda` where there is none is a
// ConfigError, so the CLI reports it in one line with exit code 2.
//
// Precision: bf16 runs the matmuls of the forward pass (and so their
// backward) under LibTorch's autocast in bfloat16; the parameters, AdamW's
// moments, the loss reduction, the gradient norm and checkpoints stay fp32.
// fp32 runs everything in float32. Analysis always runs in fp32 (or float64
// where asked for), whatever the model was trained in: see FullPrecisionScope.
#pragma once

#include <c10/core/Device.h>

#include <string>

#include "metalm/config/config.hpp"

namespace metalm {

// The device a DeviceKind names here. Throws ConfigError when `kind` is Cuda
// and CUDA is unavailable; `what` names the setting in that message
// ("train.device", "--device").
c10::Device resolve_device(DeviceKind kind, const std::string& what = "train.device");

// "cpu", "cuda:0"
std::string device_label(const c10::Device& device);

// True when `device` multiplies bfloat16 natively: a CUDA device, or a CPU
// whose flags (/proc/cpuinfo) include avx512_bf16 or amx_bf16. Elsewhere
// oneDNN emulates bf16 matmuls, 10-25x slower than fp32.
bool native_bf16(const c10::Device& device);

// Auto -> Bf16 where native_bf16(device), else Fp32; Fp32 and Bf16 as given.
Precision resolve_precision(Precision precision, const c10::Device& device);

// Runs the enclosed forward passes under autocast on `device`'s type when
// precision is bf16 (or auto resolving to bf16); does nothing for fp32. Restores the previous autocast
// state (and frees autocast's cast cache) when it ends. Not copyable.
class AutocastScope {
 public:
  AutocastScope(Precision precision, const c10::Device& device);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool was_cpu_ = false, was_gpu_ = false;
};

// Switches autocast off for the enclosed code (the analyser's exact fp32
// arithmetic), whatever scope the caller is in; restores it at the end.
class FullPrecisionScope {
 public:
  FullPrecisionScope();
  ~FullPrecisionScope();
  FullPrecisionScope(const FullPrecisionScope&) = delete;
  FullPrecisionScope& operator=(const FullPrecisionScope&) = delete;

 private:
  bool was_cpu_, was_gpu_;
};

}  // namespace metalm
