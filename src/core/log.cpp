#include "metalm/core/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "metalm/core/error.hpp"

namespace metalm {

void init_logging(const std::string& level) {
  const auto parsed = spdlog::level::from_str(level);
  // from_str maps unknown names to "off"; only "off" itself may mean that.
  if (parsed == spdlog::level::off && level != "off")
    throw ConfigError("--log-level " + level +
                      ": unknown level (expected trace, debug, info, warn, error, critical or off)");
  auto logger = spdlog::stderr_color_mt("metalm");
  logger->set_pattern("[%H:%M:%S] %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(parsed);
}

}  // namespace metalm
