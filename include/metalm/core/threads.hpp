// Thread settings for libtorch's intra-op pool and the BLAS it calls.
#pragma once

namespace metalm {

// Number of hardware threads (at least 1).
int hardware_threads();

// Sets libtorch's intra-op threads; 0 means all hardware threads. Returns the
// number in force.
int set_threads(int threads);

// libgomp reads OMP_WAIT_POLICY once, when it loads, before main() runs; with
// the default (active) policy the OpenMP pool and OpenBLAS's threads spin
// against each other. When the variable is unset this re-executes the current
// program with OMP_WAIT_POLICY=passive (and returns only if that fails).
// Call first thing in main(), with main's argv.
void ensure_passive_omp_wait_policy(char** argv);

}  // namespace metalm
