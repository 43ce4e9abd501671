// Thread settings for libtorch's intra-op pool and the BLAS it calls.
#pragma once

#include <string>

namespace metalm {

// The most intra-op threads metalm accepts. A fixed ceiling rather than a
// multiple of this machine's cores, so a run's thread count (which decides the
// order of float reductions, hence the last bits of its losses) can be
// reproduced on a smaller machine; 256 is far above any useful setting and far
// below the counts that make thread creation itself stall the process.
constexpr int kMaxThreads = 256;

// Number of hardware threads (at least 1).
int hardware_threads();

// Throws ConfigError naming `what` (e.g. "--threads" or "train.threads")
// unless 0 <= threads <= kMaxThreads.
void check_threads(long long threads, const std::string& what);

// Sets libtorch's intra-op threads; 0 means all hardware threads. Returns the
// number in force. Throws ConfigError (check_threads) for an impossible count.
int set_threads(int threads);

// libgomp reads OMP_WAIT_POLICY once, when it loads, before main() runs; with
// the default (active) policy the OpenMP pool and OpenBLAS's threads spin
// against each other. When the variable is unset this re-executes the current
// program with OMP_WAIT_POLICY=passive (and returns only if that fails).
// Call first thing in main(), with main's argv.
void ensure_passive_omp_wait_policy(char** argv);

// Keeps freed memory in the process (glibc mallopt: blocks of every size come
// from the heap, none is mapped fresh, and the heap is trimmed only above
// 1 GiB) instead of handing it back to the kernel at once: a training step
// allocates and frees the same large activations every time, and taking them
// fresh from the kernel costs a page fault per 4 KB. Blocks above 32 MiB
// (glibc's largest mmap threshold), e.g. the logits of a 4,096-token
// vocabulary, made a training step about 4x slower when they were mapped
// (docs/performance.md). Memory in use stays the same; the process keeps its
// peak, and a fragmented heap can hold more (peak RSS +9 % in that run).
// Call before tensor work.
void keep_freed_memory();

}  // namespace metalm
