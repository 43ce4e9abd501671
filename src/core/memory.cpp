#include "metalm/core/memory.hpp"

#include <unistd.h>

#include <cstdio>

#include "metalm/core/error.hpp"

namespace metalm {

uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

std::string bytes_text(double bytes) {
  static const char* const units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  while (bytes >= 1024.0 && unit < 6) {
    bytes /= 1024.0;
    ++unit;
  }
  char text[64];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.1f %s", bytes, units[unit]);
  return text;
}

void check_memory_estimate(double bytes, const std::string& what) {
  const uint64_t physical = physical_memory_bytes();
  // The estimates are upper ends (up to about twice what was measured), so
  // only what cannot fit whatever the slack is refused: a command is never
  // turned away that would have run.
  if (physical == 0 || !(bytes > 2.0 * static_cast<double>(physical))) return;
  throw ConfigError(what + " need about " + bytes_text(bytes) + " of memory (estimated), more than twice this "
                    "machine's " + bytes_text(static_cast<double>(physical)) + "; choose smaller sizes");
}

}  // namespace metalm
