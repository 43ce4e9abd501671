// What this CPU can run, and which kernels the numeric libraries use on it.
//
// OpenBLAS picks its GEMM kernel from CPUID when it loads, and falls back to
// an SSE3 kernel ("Prescott") on a CPU it does not know: Debian's 0.3.21 does
// so on recent Xeons with AVX-512, where its own SkylakeX kernel is 4-5x
// faster. ATen picks its vectorised kernels (the "CPU capability") once too,
// and keeps AVX-512 opt-in. Both read their environment variables
// (OPENBLAS_CORETYPE, ATEN_CPU_CAPABILITY) only when they load, so the
// choice is made by the `metalm` launcher, which loads no libtorch, before it
// execs metalm-tensor (docs/performance.md). The choices here are pure
// functions of the library's own pick, the CPU's flags and what the user set;
// a value the user set always wins.
//
// Nothing here links libtorch: the launcher uses it.
#pragma once

#include <string>
#include <vector>

namespace metalm {

struct CpuInfo {
  std::string model;               // /proc/cpuinfo's "model name"; "" when unknown
  std::vector<std::string> flags;  // its "flags", in the kernel's spelling (avx512f, avx512_bf16, ...)
  bool has(const std::string& flag) const;
};

// The first processor's model name and flags of a /proc/cpuinfo text (every
// core lists the same); empty fields when the text has none.
CpuInfo parse_cpuinfo(const std::string& text);

// This machine's /proc/cpuinfo, read once (empty where there is none).
const CpuInfo& cpu_info();

// The widest vector instructions the CPU and the kernel enable, in the
// classes OpenBLAS's kernels need: Avx512 is F, BW, VL and DQ together (what
// the SkylakeX kernel uses), Avx2 is AVX2 with FMA (Haswell's).
enum class IsaLevel { Baseline, Avx2, Avx512 };
IsaLevel isa_level(const CpuInfo& cpu);
const char* to_string(IsaLevel level);

// Who decided what a library runs: its own detection, the user (the
// environment variable was set before metalm ran), or metalm's launcher.
enum class SetBy { Library, User, Metalm };
const char* to_string(SetBy who);

// A choice for one environment variable. `value` is what the launcher sets
// ("" leaves the variable alone); `reason` is one sentence for the log.
struct KernelChoice {
  std::string value;
  SetBy set_by = SetBy::Library;
  std::string reason;
};

// True for OpenBLAS's pre-AVX kernels (Prescott, Core2, Nehalem, ... and
// "Unknown"), what it falls back to on a CPU it does not recognise; names
// are compared case-insensitively, as OpenBLAS reads OPENBLAS_CORETYPE.
bool is_fallback_blas_kernel(const std::string& corename);

// OPENBLAS_CORETYPE. `detected` is the kernel OpenBLAS picks by itself ("" if
// the BLAS is not OpenBLAS), `user` the variable as the user set it ("" if
// unset). A fallback kernel on a CPU with AVX-512 becomes SkylakeX, on one
// with AVX2+FMA Haswell; anything else is left to OpenBLAS. SkylakeX rather
// than Cooperlake on CPUs with AVX512-BF16: Cooperlake adds only the
// bf16 GEMM (sbgemm), which libtorch does not call, and has not been measured
// against SkylakeX here.
KernelChoice choose_blas_kernel(const std::string& detected, const std::string& user, IsaLevel cpu);

// ATEN_CPU_CAPABILITY. ATen (1.13) runs avx2 on every AVX2+FMA CPU and
// AVX-512 only when asked; with `prefer_avx512` the launcher asks for it on
// an Avx512 CPU. The launcher passes kPreferAvx512Aten.
KernelChoice choose_aten_capability(const std::string& user, IsaLevel cpu, bool prefer_avx512);

// Off until a measurement shows AVX-512 ATen kernels faster on the CPUs
// metalm runs on (one Xeon measured +14 % on `wider` in fp32; Zen 4 is
// unmeasured): docs/performance.md.
constexpr bool kPreferAvx512Aten = false;

// The BLAS a shared-library name resolves to, as this process's dynamic
// linker finds it (libtorch links libblas.so.3). When that library is
// already loaded (metalm-tensor), its kernel is the one in force.
struct BlasLibrary {
  std::string path;      // the file loaded ("" if none could be)
  std::string config;    // openblas_get_config(): version and build ("" if not OpenBLAS)
  std::string corename;  // openblas_get_corename() ("" if not OpenBLAS)
};
BlasLibrary probe_blas_library(const std::string& soname = "libblas.so.3");

// How the launcher tells metalm-tensor what it decided (the kernel OpenBLAS
// detected by itself, who set each variable and why), so metalm-tensor can
// log and record it: environment variables, set just before the exec.
inline constexpr const char* kBlasKernelDetectedEnv = "METALM_BLAS_KERNEL_DETECTED";
inline constexpr const char* kBlasKernelChoiceEnv = "METALM_BLAS_KERNEL_CHOICE";
inline constexpr const char* kAtenCapabilityChoiceEnv = "METALM_ATEN_CAPABILITY_CHOICE";

// A choice as one environment value, "set_by|value|reason", and back. parse
// returns false for a value it cannot read (then `out` is unchanged).
std::string format_choice(const KernelChoice& choice);
bool parse_choice(const std::string& text, KernelChoice& out);

}  // namespace metalm
