// metalm-tensor: every metalm command, linked against libtorch. `metalm` hands
// it every command line that does tensor work (and --help), with
// OMP_WAIT_POLICY already set, so libtorch loads once; run directly, it still
// sets the policy itself, by re-executing.
#include <c10/util/Exception.h>

#include <exception>
#include <string>

#include "cli_main.hpp"
#include "metalm/core/threads.hpp"

namespace {

// libtorch's messages carry a C++ backtrace; the message is what the user needs.
std::string describe_torch_error(const std::exception& e) {
  if (const auto* torch_error = dynamic_cast<const c10::Error*>(&e))
    return std::string("torch: ") + torch_error->what_without_backtrace();
  return e.what();
}

}  // namespace

int main(int argc, char** argv) {
  if (metalm::cli::classify(argc, argv) == metalm::cli::Workload::Tensor) {
    metalm::ensure_passive_omp_wait_policy(argv);  // returns at once when metalm set the policy
    metalm::keep_freed_memory();
  }
  return metalm::cli::run(argc, argv, describe_torch_error);
}
