// Human progress goes to stderr through spdlog; machine output goes to files.
#pragma once

#include <string>

namespace metalm {

// Makes spdlog's default logger write to stderr at the given level
// (trace, debug, info, warn, error, critical, off). Throws ConfigError on an
// unknown level.
void init_logging(const std::string& level = "info");

}  // namespace metalm
