#include "metalm/model/device.hpp"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <ATen/autocast_mode.h>
#include <spdlog/spdlog.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/cpu.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/model/runtime.hpp"

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

std::vector<GemmShape> model_gemm_shapes(const ModelConfig& model, int64_t tokens) {
  const int64_t d = model.d_model, mlp = model.d_mlp > 0 ? model.d_mlp : 4 * model.d_model;
  std::vector<GemmShape> shapes = {{tokens, d, 3 * d, model.n_layer}, {tokens, d, d, model.n_layer}};
  if (model.mlp != MlpKind::None) {
    shapes.push_back({tokens, d, mlp, model.n_layer});
    shapes.push_back({tokens, mlp, d, model.n_layer});
  }
  shapes.push_back({tokens, d, model.vocab_size, 1});
  return shapes;
}

MachineFacts this_machine() {
  const RuntimeKernels& k = runtime_kernels();
  MachineFacts f;
  f.cpu = cpu_info().model;
  for (const std::string& flag : cpu_info().flags) f.flags += (f.flags.empty() ? "" : " ") + flag;
  f.libraries = at::show_config() + "BLAS: " + k.blas_library + " " + k.blas_config;
  f.blas_kernel = k.blas_kernel;
  f.threads = at::get_num_threads();
  return f;
}

std::string default_precision_cache_path() {
  namespace fs = std::filesystem;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg == '/')
    return (fs::path(xdg) / "metalm" / "precision.json").string();
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return (fs::path(home) / ".cache" / "metalm" / "precision.json").string();
  return "";
}

namespace {

constexpr const char* kProbeFormat = "metalm-precision-probe";
constexpr int kProbeVersion = 1;
// Results kept in the cache file, newest last: enough for the machines and
// thread counts that share one home directory.
constexpr std::size_t kMaxProbeEntries = 64;
// bf16 must beat fp32 by this much to be chosen: a tie keeps fp32's exact
// arithmetic.
constexpr double kBf16Margin = 1.05;

// The shapes as the cache records them.
nlohmann::json shapes_json(const std::vector<GemmShape>& shapes) {
  nlohmann::json j = nlohmann::json::array();
  for (const GemmShape& s : shapes) j.push_back({s.m, s.k, s.n, s.count});
  return j;
}

nlohmann::json facts_json(const MachineFacts& f) {
  return {{"cpu", f.cpu}, {"flags", f.flags}, {"libraries", f.libraries}, {"blas_kernel", f.blas_kernel},
          {"threads", f.threads}};
}

// Seconds of one forward and backward pass over `shapes` in `precision`:
// each product is timed on at most 512 rows and a ~0.2 GFLOP slice of its
// columns (libtorch's kernels run near their peak there, and the probe stays
// well under a second), scaled up to the full shape, the fastest of two
// passes after one untimed one. bf16 runs as autocast runs it: the
// activations cast from fp32, the weights already in bf16.
double time_gemms(Precision precision, const std::vector<GemmShape>& shapes) {
  using Clock = std::chrono::steady_clock;
  at::NoGradGuard no_grad;
  FullPrecisionScope exact;  // the casts are explicit here
  const at::ScalarType dtype = precision == Precision::Bf16 ? at::kBFloat16 : at::kFloat;
  struct Operands {
    at::Tensor x, w, dy;
    double scale;
    int64_t count;
  };
  std::vector<Operands> ops;
  for (const GemmShape& s : shapes) {
    const int64_t m = std::min<int64_t>(s.m, 512);
    const int64_t n = std::min<int64_t>(s.n, std::max<int64_t>(256, 100'000'000 / std::max<int64_t>(1, m * s.k)));
    ops.push_back({at::randn({m, s.k}), at::randn({n, s.k}).to(dtype), at::randn({m, n}).to(dtype),
                   static_cast<double>(s.m) * static_cast<double>(s.n) / (static_cast<double>(m) * n), s.count});
  }
  std::vector<double> best(ops.size(), std::numeric_limits<double>::infinity());
  for (int pass = 0; pass < 3; ++pass) {
    for (std::size_t i = 0; i < ops.size(); ++i) {
      const Operands& o = ops[i];
      const auto t0 = Clock::now();
      const at::Tensor x = o.x.to(dtype);
      const at::Tensor y = at::linear(x, o.w);          // [m, k] x [n, k]^T -> [m, n]
      const at::Tensor dx = at::mm(o.dy, o.w);          // [m, n] x [n, k]   -> [m, k]
      const at::Tensor dw = at::mm(o.dy.t(), x);        // [n, m] x [m, k]   -> [n, k]
      const double t = std::chrono::duration<double>(Clock::now() - t0).count();
      if (pass > 0) best[i] = std::min(best[i], t);
    }
  }
  double total = 0;
  for (std::size_t i = 0; i < ops.size(); ++i) total += best[i] * ops[i].scale * static_cast<double>(ops[i].count);
  return total;
}

double gemm_flops(const std::vector<GemmShape>& shapes) {
  double flops = 0;
  for (const GemmShape& s : shapes)
    flops += 3.0 * 2.0 * static_cast<double>(s.m) * static_cast<double>(s.k) * static_cast<double>(s.n) *
             static_cast<double>(s.count);
  return flops;
}

// The cache's entries, or none (with a warning) when the file is not one.
nlohmann::json read_probe_cache(const std::string& path) {
  if (path.empty() || !std::filesystem::exists(path)) return nlohmann::json::array();
  try {
    const nlohmann::json j = parse_json(read_file(path), path, JsonError::Format);
    if (!j.is_object() || j.value("format", "") != kProbeFormat || !j.contains("version") ||
        j["version"] != kProbeVersion || !j.contains("entries") || !j["entries"].is_array())
      throw FormatError(path + ": not a metalm precision probe cache (format \"" + kProbeFormat + "\", version " +
                        std::to_string(kProbeVersion) + ")");
    return j["entries"];
  } catch (const Error& e) {
    spdlog::warn("ignoring the precision probe cache: {}; measuring again", e.what());
  } catch (const nlohmann::json::exception& e) {
    spdlog::warn("ignoring the precision probe cache {}: {}; measuring again", path, e.what());
  }
  return nlohmann::json::array();
}

// A cached entry for these facts and shapes, if it is well formed.
bool find_probe(const nlohmann::json& entries, const nlohmann::json& facts, const nlohmann::json& shapes,
                PrecisionProbe& out) {
  for (const nlohmann::json& e : entries) {
    if (!e.is_object() || e.value("facts", nlohmann::json()) != facts || e.value("shapes", nlohmann::json()) != shapes)
      continue;
    const nlohmann::json fp32 = e.value("fp32_gflops", nlohmann::json()), bf16 = e.value("bf16_gflops", nlohmann::json());
    const nlohmann::json choice = e.value("choice", nlohmann::json());
    if (!fp32.is_number() || !bf16.is_number() || (choice != "fp32" && choice != "bf16")) continue;
    out = {fp32.get<double>(), bf16.get<double>(), choice == "bf16" ? Precision::Bf16 : Precision::Fp32, true};
    return true;
  }
  return false;
}

void write_probe_cache(const std::string& path, nlohmann::json entries, const nlohmann::json& facts,
                       const nlohmann::json& shapes, const PrecisionProbe& p) {
  if (path.empty()) return;
  nlohmann::json kept = nlohmann::json::array();
  for (const nlohmann::json& e : entries)
    if (e.is_object() && !(e.value("facts", nlohmann::json()) == facts && e.value("shapes", nlohmann::json()) == shapes))
      kept.push_back(e);
  kept.push_back({{"facts", facts},
                  {"shapes", shapes},
                  {"fp32_gflops", p.fp32_gflops},
                  {"bf16_gflops", p.bf16_gflops},
                  {"choice", p.choice == Precision::Bf16 ? "bf16" : "fp32"}});
  if (kept.size() > kMaxProbeEntries) kept.erase(kept.begin(), kept.end() - kMaxProbeEntries);
  try {
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    write_file_atomic(path, nlohmann::json{{"format", kProbeFormat}, {"version", kProbeVersion}, {"entries", kept}}
                                    .dump(2) + "\n");
  } catch (const std::exception& e) {
    spdlog::warn("could not cache the precision probe in {}: {}", path, e.what());
  }
}

}  // namespace

PrecisionProbe probe_precision(const std::vector<GemmShape>& shapes, const ProbeOptions& options) {
  const std::string path = options.cache_path.empty() ? default_precision_cache_path() : options.cache_path;
  const nlohmann::json facts = facts_json(options.facts ? options.facts() : this_machine());
  const nlohmann::json key_shapes = shapes_json(shapes);
  const nlohmann::json entries = read_probe_cache(path);
  PrecisionProbe p;
  if (find_probe(entries, facts, key_shapes, p)) return p;
  std::function<double(Precision, const std::vector<GemmShape>&)> seconds = options.seconds;
  if (!seconds) seconds = time_gemms;
  const double flops = gemm_flops(shapes);
  p.fp32_gflops = flops / std::max(1e-12, seconds(Precision::Fp32, shapes)) * 1e-9;
  p.bf16_gflops = flops / std::max(1e-12, seconds(Precision::Bf16, shapes)) * 1e-9;
  p.choice = p.bf16_gflops >= kBf16Margin * p.fp32_gflops ? Precision::Bf16 : Precision::Fp32;
  write_probe_cache(path, entries, facts, key_shapes, p);
  return p;
}

Precision resolve_precision(Precision precision, const c10::Device& device, const ModelConfig& model,
                            int64_t tokens) {
  if (precision != Precision::Auto) return precision;
  if (device.is_cuda()) return Precision::Bf16;
  if (!native_bf16(device)) return Precision::Fp32;
  const std::vector<GemmShape> shapes = model_gemm_shapes(model, tokens > 0 ? tokens : 16 * model.context);
  // Once per process, shapes and thread count: forward_logits resolves on
  // every call.
  static std::mutex mutex;
  static std::map<std::string, Precision> chosen;
  const std::string key = shapes_json(shapes).dump() + "@" + std::to_string(at::get_num_threads());
  std::lock_guard<std::mutex> lock(mutex);
  if (const auto it = chosen.find(key); it != chosen.end()) return it->second;
  const PrecisionProbe p = probe_precision(shapes);
  spdlog::info("precision auto -> {}: this model's matmuls run at {:.0f} GFLOP/s in fp32, {:.0f} in bf16 on {} "
               "thread(s) ({})",
               p.choice == Precision::Bf16 ? "bf16" : "fp32", p.fp32_gflops, p.bf16_gflops, at::get_num_threads(),
               p.cached ? "measured before, cached in " + default_precision_cache_path() : "measured now");
  return chosen.emplace(key, p.choice).first->second;
}

Precision resolve_precision(Precision precision, const c10::Device& device) {
  return resolve_precision(precision, device, ModelConfig{});
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
