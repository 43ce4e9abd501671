#include "metalm/core/threads.hpp"

#include <ATen/Parallel.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include "metalm/core/error.hpp"

namespace metalm {

int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void check_threads(long long threads, const std::string& what) {
  if (threads < 0 || threads > kMaxThreads)
    throw ConfigError(what + " = " + std::to_string(threads) + ": expected 0 (all " +
                      std::to_string(hardware_threads()) + " hardware threads) to " + std::to_string(kMaxThreads));
}

int set_threads(int threads) {
  check_threads(threads, "threads");
  const int n = threads > 0 ? threads : hardware_threads();
  at::set_num_threads(n);
  return at::get_num_threads();
}

void ensure_passive_omp_wait_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  if (std::getenv("METALM_NO_REEXEC") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "passive", 1);
  ::execv("/proc/self/exe", argv);
  // execv only returns on failure; the program still works, just slower.
}

}  // namespace metalm

namespace metalm {

void keep_freed_memory() {
  // Blocks below the mmap threshold come from the heap, and the heap is only
  // trimmed when its free top exceeds the trim threshold. 32 MB is glibc's
  // largest mmap threshold on 64-bit systems.
  ::mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  ::mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024);
  // Larger blocks would still be mapped fresh and unmapped on free, every
  // time: no mmap at all, so they come from (and return to) the heap too.
  ::mallopt(M_MMAP_MAX, 0);
}

}  // namespace metalm
