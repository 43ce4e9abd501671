// How many numbers a module learns: the one parameter count that the trainer,
// the importer and the benchmarks report.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>

namespace metalm {

// Total number of elements of the module's parameters (recursively). A
// tensor registered under several names (a weight shared by two modules)
// counts once.
int64_t count_parameters(const torch::nn::Module& module);

}  // namespace metalm
