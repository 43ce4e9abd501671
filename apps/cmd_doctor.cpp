// `metalm doctor`: what this machine's arithmetic runs on and how fast, the
// command to run first (docs/performance.md). The CPU and its relevant
// flags, the threads, the BLAS and its kernel (OpenBLAS's own pick and the
// one in force, with who chose it), ATen's capability, the 1024x1024 GEMM
// peaks in fp32 and bf16, what precision auto picks, and one line per thing
// that leaves speed unused. --json prints the same as one JSON object.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "command.hpp"
#include "metalm/core/cpu.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/runtime.hpp"

namespace metalm::cli {
namespace {

constexpr const char* kDoctorFormat = "metalm-doctor";
constexpr int kDoctorVersion = 1;

// The flags that decide which kernels can run.
const char* const kRelevantFlags[] = {"avx",      "avx2",     "fma",         "f16c",      "avx512f",
                                      "avx512bw", "avx512vl", "avx512dq",    "avx512cd",  "avx512_vnni",
                                      "avx512_bf16", "amx_tile", "amx_bf16", "avx_vnni"};

// GFLOP/s of a 1024x1024 matmul in `dtype`, repeated for about `seconds`
// after one untimed product.
double gemm_peak(at::ScalarType dtype, double seconds) {
  using Clock = std::chrono::steady_clock;
  at::NoGradGuard no_grad;
  FullPrecisionScope exact;
  const int64_t n = 1024;
  const at::Tensor a = at::randn({n, n}).to(dtype), b = at::randn({n, n}).to(dtype);
  at::mm(a, b);
  int64_t reps = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    at::mm(a, b);
    ++reps;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return 2.0 * n * n * n * static_cast<double>(reps) / elapsed * 1e-9;
}

nlohmann::json diagnose(double seconds) {
  const CpuInfo& cpu = cpu_info();
  const RuntimeKernels& k = runtime_kernels();
  const IsaLevel isa = isa_level(cpu);
  nlohmann::json flags = nlohmann::json::array();
  for (const char* f : kRelevantFlags)
    if (cpu.has(f)) flags.push_back(f);
  const bool native = native_bf16(c10::Device(c10::kCPU));
  const int threads = at::get_num_threads(), hardware = hardware_threads();

  const double fp32 = gemm_peak(at::kFloat, seconds), bf16 = gemm_peak(at::kBFloat16, seconds);

  // What auto picks for a model of the default config at a 16 x 256 batch.
  const ModelConfig model;
  nlohmann::json auto_pick = {{"model", "default config (d_model 256, 4 layers), 16 x 256 tokens"}};
  if (native) {
    const PrecisionProbe p = probe_precision(model_gemm_shapes(model, 16 * model.context));
    auto_pick["choice"] = p.choice == Precision::Bf16 ? "bf16" : "fp32";
    auto_pick["fp32_gflops"] = p.fp32_gflops;
    auto_pick["bf16_gflops"] = p.bf16_gflops;
    auto_pick["cached"] = p.cached;
    auto_pick["reason"] = "measured at the model's matmuls";
  } else {
    auto_pick["choice"] = "fp32";
    auto_pick["fp32_gflops"] = nullptr;
    auto_pick["bf16_gflops"] = nullptr;
    auto_pick["cached"] = false;
    auto_pick["reason"] = "no native bf16 (avx512_bf16 or amx_bf16): bf16 would be emulated";
  }

  nlohmann::json warnings = nlohmann::json::array();
  if (is_fallback_blas_kernel(k.blas_kernel) && isa != IsaLevel::Baseline)
    warnings.push_back("OpenBLAS runs its pre-AVX " + k.blas_kernel + " kernel on a CPU with " + to_string(isa) +
                       ": unset OPENBLAS_CORETYPE and run through `metalm`, or set OPENBLAS_CORETYPE=" +
                       (isa == IsaLevel::Avx512 ? "SkylakeX" : "Haswell"));
  if (threads < hardware)
    warnings.push_back("the intra-op pool runs " + std::to_string(threads) + " of " + std::to_string(hardware) +
                       " hardware threads (--threads, train.threads)");
  if (const char* policy = std::getenv("OMP_WAIT_POLICY"); policy == nullptr || std::string(policy) != "passive")
    warnings.push_back("OMP_WAIT_POLICY is not passive: OpenMP's and OpenBLAS's threads spin against each other "
                       "(run through `metalm`, which sets it)");
  if (isa == IsaLevel::Avx512 && k.aten_capability == "avx2")
    warnings.push_back("ATen runs its avx2 kernels on a CPU with AVX-512 (ATEN_CPU_CAPABILITY=avx512 may be "
                       "faster: measure with `metalm bench train`)");

  nlohmann::json runtime = to_json(k);
  return {{"format", kDoctorFormat},
          {"version", kDoctorVersion},
          {"cpu", {{"model", cpu.model}, {"isa", to_string(isa)}, {"flags", flags}, {"native_bf16", native}}},
          {"threads", {{"intra_op", threads}, {"hardware", hardware}}},
          {"blas", runtime["blas"]},
          {"aten_capability",
           {{"in_force", k.aten_capability},
            {"set_by", runtime["aten_capability_set_by"]},
            {"reason", runtime["aten_capability_reason"]}}},
          {"gemm_peak_gflops", {{"fp32", fp32}, {"bf16", bf16}, {"size", 1024}, {"seconds", seconds}}},
          {"auto_precision", auto_pick},
          {"precision_cache", default_precision_cache_path()},
          {"warnings", warnings}};
}

std::string str(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

void print_text(const nlohmann::json& d) {
  std::string flags;
  for (const auto& f : d["cpu"]["flags"]) flags += " " + f.get<std::string>();
  const auto& b = d["blas"];
  std::printf("cpu              %s (%s;%s)\n", str(d["cpu"]["model"]).c_str(), str(d["cpu"]["isa"]).c_str(),
              flags.c_str());
  std::printf("threads          %d intra-op of %d hardware\n", d["threads"]["intra_op"].get<int>(),
              d["threads"]["hardware"].get<int>());
  std::printf("blas             %s%s%s\n", str(b["library"]).c_str(), str(b["config"]).empty() ? "" : ": ",
              str(b["config"]).c_str());
  std::printf("blas kernel      %s in force, %s detected by OpenBLAS itself; set by %s (%s)\n",
              str(b["kernel"]).empty() ? "-" : str(b["kernel"]).c_str(),
              str(b["kernel_detected"]).empty() ? "-" : str(b["kernel_detected"]).c_str(),
              str(b["kernel_set_by"]).c_str(), str(b["kernel_reason"]).c_str());
  std::printf("aten capability  %s; set by %s (%s)\n", str(d["aten_capability"]["in_force"]).c_str(),
              str(d["aten_capability"]["set_by"]).c_str(), str(d["aten_capability"]["reason"]).c_str());
  std::printf("gemm peak        fp32 %.0f GFLOP/s, bf16 %.0f GFLOP/s (1024x1024, %.2f s each)\n",
              d["gemm_peak_gflops"]["fp32"].get<double>(), d["gemm_peak_gflops"]["bf16"].get<double>(),
              d["gemm_peak_gflops"]["seconds"].get<double>());
  const auto& a = d["auto_precision"];
  if (a["fp32_gflops"].is_number())
    std::printf("precision auto   %s for the %s: fp32 %.0f, bf16 %.0f GFLOP/s at its matmuls (%s)\n",
                str(a["choice"]).c_str(), str(a["model"]).c_str(), a["fp32_gflops"].get<double>(),
                a["bf16_gflops"].get<double>(), a["cached"].get<bool>() ? "cached" : "measured now");
  else
    std::printf("precision auto   %s (%s)\n", str(a["choice"]).c_str(), str(a["reason"]).c_str());
  for (const auto& w : d["warnings"]) std::printf("warning: %s\n", str(w).c_str());
}

const Registration doctor_command{"doctor", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    bool json = false;
    double seconds = 0.2;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("doctor", "what this machine's arithmetic runs on, how fast, and what to fix");
  cmd->add_flag("--json", o->json, "print one JSON object instead of text");
  cmd->add_option("--seconds", o->seconds, "time spent on each GEMM peak (fp32, bf16)")
      ->type_name("S")
      ->check(real_range(0.01, 10.0))
      ->capture_default_str();
  return std::function<int()>([o, &global]() {
    set_threads(global.threads);
    const nlohmann::json d = diagnose(o->seconds);
    if (o->json)
      std::cout << d.dump(2) << "\n";
    else
      print_text(d);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
