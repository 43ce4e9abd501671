#include "metalm/core/cpu.hpp"

#include <dlfcn.h>
#include <strings.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace metalm {

bool CpuInfo::has(const std::string& flag) const {
  return std::find(flags.begin(), flags.end(), flag) != flags.end();
}

namespace {

// "key\t: value" -> value, when the line's key is `key`.
bool field(const std::string& line, const std::string& key, std::string& value) {
  if (line.rfind(key, 0) != 0) return false;
  const std::size_t colon = line.find(':');
  if (colon == std::string::npos) return false;
  const std::string name = line.substr(0, colon);
  if (name.find_last_not_of(" \t") + 1 != key.size()) return false;
  value = line.substr(colon + 1);
  value.erase(0, value.find_first_not_of(" \t"));
  return true;
}

}  // namespace

CpuInfo parse_cpuinfo(const std::string& text) {
  CpuInfo cpu;
  bool have_model = false, have_flags = false;
  std::istringstream in(text);
  std::string line, value;
  while ((!have_model || !have_flags) && std::getline(in, line)) {
    if (!have_model && field(line, "model name", value)) {
      cpu.model = value;
      have_model = true;
    } else if (!have_flags && field(line, "flags", value)) {
      std::istringstream flags(value);
      for (std::string flag; flags >> flag;) cpu.flags.push_back(flag);
      have_flags = true;
    }
  }
  return cpu;
}

const CpuInfo& cpu_info() {
  static const CpuInfo cpu = [] {
    std::ifstream in("/proc/cpuinfo");
    std::ostringstream text;
    text << in.rdbuf();
    return parse_cpuinfo(text.str());
  }();
  return cpu;
}

IsaLevel isa_level(const CpuInfo& cpu) {
  if (cpu.has("avx512f") && cpu.has("avx512bw") && cpu.has("avx512vl") && cpu.has("avx512dq"))
    return IsaLevel::Avx512;
  if (cpu.has("avx2") && cpu.has("fma")) return IsaLevel::Avx2;
  return IsaLevel::Baseline;
}

const char* to_string(IsaLevel level) {
  switch (level) {
    case IsaLevel::Avx512: return "avx512";
    case IsaLevel::Avx2: return "avx2";
    case IsaLevel::Baseline: break;
  }
  return "baseline";
}

const char* to_string(SetBy who) {
  switch (who) {
    case SetBy::User: return "user";
    case SetBy::Metalm: return "metalm";
    case SetBy::Library: break;
  }
  return "library";
}

bool is_fallback_blas_kernel(const std::string& corename) {
  // OpenBLAS's x86-64 kernels older than AVX (driver/others/dynamic.c's
  // corename table); "Unknown" is what it reports when it found none.
  static const std::array<const char*, 17> kFallbacks = {
      "Unknown", "Katmai", "Coppermine", "Northwood", "Prescott",     "Banias",    "Atom", "Core2", "Penryn",
      "Dunnington", "Nehalem", "Athlon", "Opteron", "Opteron_SSE3", "Barcelona", "Nano", "Bobcat"};
  return std::any_of(kFallbacks.begin(), kFallbacks.end(),
                     [&](const char* name) { return ::strcasecmp(name, corename.c_str()) == 0; });
}

KernelChoice choose_blas_kernel(const std::string& detected, const std::string& user, IsaLevel cpu) {
  if (!user.empty()) return {"", SetBy::User, "OPENBLAS_CORETYPE=" + user + " set by the user"};
  if (detected.empty()) return {"", SetBy::Library, "the BLAS is not OpenBLAS: no kernel to choose"};
  if (is_fallback_blas_kernel(detected) && cpu != IsaLevel::Baseline) {
    const std::string kernel = cpu == IsaLevel::Avx512 ? "SkylakeX" : "Haswell";
    return {kernel, SetBy::Metalm,
            "OpenBLAS picked " + detected + ", a pre-AVX fallback, on a CPU with " + to_string(cpu) +
                ": metalm set OPENBLAS_CORETYPE=" + kernel};
  }
  return {"", SetBy::Library, "OpenBLAS's own pick " + detected};
}

KernelChoice choose_aten_capability(const std::string& user, IsaLevel cpu, bool prefer_avx512) {
  if (!user.empty()) return {"", SetBy::User, "ATEN_CPU_CAPABILITY=" + user + " set by the user"};
  if (prefer_avx512 && cpu == IsaLevel::Avx512)
    return {"avx512", SetBy::Metalm, "metalm set ATEN_CPU_CAPABILITY=avx512 (AVX-512 is opt-in in ATen)"};
  return {"", SetBy::Library, "ATen's own pick (avx2 on an AVX2+FMA CPU, AVX-512 only when asked)"};
}

BlasLibrary probe_blas_library(const std::string& soname) {
  BlasLibrary lib;
  // Not closed: in metalm-tensor the library stays loaded by libtorch
  // anyway, and the launcher replaces itself by exec right after.
  void* handle = ::dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) return lib;
  using NameFn = char* (*)();
  const auto corename = reinterpret_cast<NameFn>(::dlsym(handle, "openblas_get_corename"));
  const auto config = reinterpret_cast<NameFn>(::dlsym(handle, "openblas_get_config"));
  // The path of the file behind the name (through its symbolic links).
  Dl_info info{};
  void* any = corename ? reinterpret_cast<void*>(corename) : ::dlsym(handle, "sgemm_");
  if (any != nullptr && ::dladdr(any, &info) != 0 && info.dli_fname != nullptr) {
    char resolved[PATH_MAX];
    lib.path = ::realpath(info.dli_fname, resolved) ? resolved : info.dli_fname;
  } else {
    lib.path = soname;
  }
  if (corename != nullptr && corename() != nullptr) lib.corename = corename();
  if (config != nullptr && config() != nullptr) {
    lib.config = config();
    lib.config.erase(lib.config.find_last_not_of(" \n") + 1);
  }
  return lib;
}

std::string format_choice(const KernelChoice& choice) {
  return std::string(to_string(choice.set_by)) + "|" + choice.value + "|" + choice.reason;
}

bool parse_choice(const std::string& text, KernelChoice& out) {
  const std::size_t a = text.find('|');
  const std::size_t b = a == std::string::npos ? a : text.find('|', a + 1);
  if (b == std::string::npos) return false;
  const std::string who = text.substr(0, a);
  KernelChoice c;
  if (who == "user") c.set_by = SetBy::User;
  else if (who == "metalm") c.set_by = SetBy::Metalm;
  else if (who == "library") c.set_by = SetBy::Library;
  else return false;
  c.value = text.substr(a + 1, b - a - 1);
  c.reason = text.substr(b + 1);
  out = c;
  return true;
}

}  // namespace metalm
