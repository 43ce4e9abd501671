// metalm: train causal Transformer LMs and analyse the inner optimization of
// their forward pass. The subcommands live in apps/cmd_*.cpp.
//
// This executable loads no libtorch (its 289 shared libraries take most of a
// second to load): --version and the commands that only read configs or text
// run here; every other command line is handed unchanged to metalm-tensor,
// installed beside it, which runs every command.
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "blas_kernel.hpp"
#include "cli_main.hpp"

namespace {

// metalm-tensor in the directory of this executable (symbolic links resolved).
std::string tensor_executable() {
  std::string self(4096, '\0');
  const ssize_t n = ::readlink("/proc/self/exe", self.data(), self.size());
  if (n <= 0 || static_cast<std::size_t>(n) >= self.size()) return "metalm-tensor";
  self.resize(static_cast<std::size_t>(n));
  return self.substr(0, self.rfind('/') + 1) + "metalm-tensor";
}

// Replaces this process by metalm-tensor with the same arguments; returns
// only on failure. The OpenMP wait policy is set here, before libgomp loads,
// to the one metalm-tensor would re-execute itself for
// (metalm::ensure_passive_omp_wait_policy), so libtorch loads only once;
// so are OpenBLAS's kernel and ATen's capability (blas_kernel.hpp).
int run_tensor_executable(char** argv) {
  const std::string path = tensor_executable();
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) ::setenv("OMP_WAIT_POLICY", "passive", 1);
  metalm::cli::choose_kernels_for_child();
  ::execv(path.c_str(), argv);
  return metalm::cli::fail("cannot run " + path + ": " + std::strerror(errno) +
                               " (every command but config, tokenize, prepare and tokenizer-train runs in "
                               "metalm-tensor, installed beside metalm)",
                           1);
}

}  // namespace

int main(int argc, char** argv) {
  if (metalm::cli::classify(argc, argv) == metalm::cli::Workload::Light)
    return metalm::cli::run(argc, argv, nullptr);
  return run_tensor_executable(argv);
}
