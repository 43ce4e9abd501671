// The CLI's subcommand registry. Each apps/cmd_*.cpp file registers one or
// more subcommands with a static Registration; main() parses and runs the one
// chosen. Library errors propagate as metalm::Error and become one-line
// messages in main().
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace metalm::cli {

// Options shared by every subcommand (set on the top-level app).
struct GlobalOptions {
  int threads = 0;  // 0: all cores
  std::string log_level = "info";
};

// Adds a subcommand to `app` and returns the function that runs it (after
// parsing), returning the process exit code.
using CommandSetup = std::function<std::function<int()>(CLI::App& app, const GlobalOptions& global)>;

struct Registration {
  Registration(std::string name, CommandSetup setup);
};

struct RegisteredCommand {
  std::string name;
  CommandSetup setup;
};

std::vector<RegisteredCommand>& registry();

// `--set section.key=value` overrides, repeatable; shared by train, config...
void add_config_options(CLI::App& cmd, std::string& config_path, std::vector<std::string>& overrides,
                        bool config_required);

}  // namespace metalm::cli
