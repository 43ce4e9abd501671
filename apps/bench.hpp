// `metalm bench <what>`: benchmark programs that print figures. Each
// benchmark lives in its own apps/cmd_bench_*.cpp (or cmd_bench.cpp) and
// registers itself here with a static BenchRegistration; cmd_bench.cpp adds
// them all as sub-subcommands of `bench`.
#pragma once

#include <CLI/CLI.hpp>
#include <time.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "command.hpp"
#include "metalm/model/causal_transformer.hpp"

namespace metalm::cli {

struct BenchRegistration {
  // `setup` adds its options to `cmd` (already created as `bench <name>`)
  // and returns the function that runs the benchmark.
  BenchRegistration(std::string name, std::string description,
                    std::function<std::function<int()>(CLI::App& cmd, const GlobalOptions& global)> setup);
};

struct RegisteredBench {
  std::string name;
  std::string description;
  std::function<std::function<int()>(CLI::App& cmd, const GlobalOptions& global)> setup;
};

std::vector<RegisteredBench>& bench_registry();

// The model the benchmarks time: this shape (GPT-2 defaults otherwise) with
// the initial weights of seed 0, on `device`. Its config() is the resolved one.
CausalTransformer seeded_bench_model(int64_t vocab, int64_t context, int64_t d_model, int64_t n_layer,
                                     int64_t n_head, const c10::Device& device);

// Wall and process CPU seconds of one call. On a shared machine the CPU time
// (all threads of this process) is the fairer measure of the work done.
struct Seconds {
  double wall = 0.0, cpu = 0.0;
};

inline double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Started when constructed; elapsed() is the wall and CPU time since.
struct Stopwatch {
  std::chrono::steady_clock::time_point wall0 = std::chrono::steady_clock::now();
  double cpu0 = cpu_seconds();
  Seconds elapsed() const {
    return {std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count(), cpu_seconds() - cpu0};
  }
};

}  // namespace metalm::cli
