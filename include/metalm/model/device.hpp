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
//
// Auto is the faster of the two on this device. On CUDA that is bf16. On a
// CPU it is measured: native bf16 instructions (avx512_bf16) do not make
// bf16 faster where OpenBLAS's fp32 kernel is fast and oneDNN's bf16 one is
// not, and the other way round; so a short probe times the model's own GEMMs
// in both, once per machine, and caches the result (probe_precision).
#pragma once

#include <c10/core/Device.h>

#include <functional>
#include <string>
#include <vector>

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
// oneDNN emulates bf16 matmuls, 10-25x slower than fp32, and auto never
// considers bf16.
bool native_bf16(const c10::Device& device);

// One matmul of the model: [m, k] activations times a [n, k] weight (the
// layout of Linear), run `count` times per forward pass.
struct GemmShape {
  int64_t m, k, n, count;
};

// The matmuls of one forward pass of `model` over `tokens` positions: per
// block the attention's input and output projections and the MLP's two (as
// many as there are blocks), and the unembedding. The attention's own
// products (scores, values) are left out: they grow with the context, not
// the width, and run the same way in both precisions' autocast.
std::vector<GemmShape> model_gemm_shapes(const ModelConfig& model, int64_t tokens);

// What a cached probe result is valid for: the CPU, its flags, the
// libraries (libtorch's build summary with its oneDNN and capability, the
// BLAS build), the BLAS kernel in force and the threads. A change in any of
// them measures again.
struct MachineFacts {
  std::string cpu, flags, libraries, blas_kernel;
  int threads = 0;
  bool operator==(const MachineFacts& o) const {
    return cpu == o.cpu && flags == o.flags && libraries == o.libraries && blas_kernel == o.blas_kernel &&
           threads == o.threads;
  }
};
MachineFacts this_machine();

// The result of timing a forward pass's matmuls (and their backward: the
// same products transposed) in each precision, in GFLOP/s.
struct PrecisionProbe {
  double fp32_gflops = 0, bf16_gflops = 0;
  Precision choice = Precision::Fp32;
  bool cached = false;  // read from the cache file rather than measured now
};

struct ProbeOptions {
  // The cache file; "" is default_precision_cache_path().
  std::string cache_path;
  // The facts the cache is keyed by; unset is this_machine().
  std::function<MachineFacts()> facts;
  // Seconds the given shapes take in a precision (fp32 or bf16); unset
  // times them with libtorch on the CPU (well under a second for both).
  std::function<double(Precision, const std::vector<GemmShape>&)> seconds;
};

// $XDG_CACHE_HOME/metalm/precision.json, else ~/.cache/metalm/precision.json
// ("" when neither variable is set: nothing is cached).
std::string default_precision_cache_path();

// The faster precision for `shapes` on the CPU: bf16 when it runs them at
// least 5 % faster than fp32 (a tie keeps fp32's exact arithmetic), fp32
// where the CPU has no native bf16 (not measured). A cached result for the
// same facts and shapes is used as it is; a new one is written atomically
// (the file keeps results for other machines that share the cache). A cache
// that cannot be read or parsed is ignored with a warning and rewritten; one
// that cannot be written is only a warning.
PrecisionProbe probe_precision(const std::vector<GemmShape>& shapes, const ProbeOptions& options = {});

// Fp32 and Bf16 as given. Auto: bf16 on CUDA; on a CPU probe_precision at
// `model`'s shapes over `tokens` positions a micro-batch (0: 16 sequences of
// its context), measured once per process and shapes, logged when measured.
Precision resolve_precision(Precision precision, const c10::Device& device, const ModelConfig& model,
                            int64_t tokens = 0);

// The same for a model of the default ModelConfig (what an AutocastScope
// given Auto without a model runs in).
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
