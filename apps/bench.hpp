// `metalm bench <what>`: benchmark programs that print figures. Each
// benchmark lives in its own apps/cmd_bench_*.cpp (or cmd_bench.cpp) and
// registers itself here with a static BenchRegistration; cmd_bench.cpp adds
// them all as sub-subcommands of `bench`.
#pragma once

#include <CLI/CLI.hpp>

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

}  // namespace metalm::cli
