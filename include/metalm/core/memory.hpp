// Memory estimates checked before a command allocates anything: a size option
// typed with three zeros too many is one line naming the option, not an
// allocator's message after minutes of work.
#pragma once

#include <cstdint>
#include <string>

namespace metalm {

// This machine's physical memory in bytes (0 when the system does not say).
uint64_t physical_memory_bytes();

// Throws ConfigError when `bytes`, an upper-end estimate of what `what` (the
// options and their values, e.g. "synthetic-icl --batch 65536 x --n 1048576")
// needs, exceeds twice physical_memory_bytes(): "WHAT need about 6.1 EiB of
// memory (estimated), more than twice this machine's 15.6 GiB".
void check_memory_estimate(double bytes, const std::string& what);

// 1536 -> "1.5 KiB", for messages.
std::string bytes_text(double bytes);

}  // namespace metalm
