// `metalm config show` and `metalm config keys`.
#include <cstdio>
#include <iostream>

#include "command.hpp"
#include "metalm/config/json.hpp"

namespace metalm::cli {
namespace {

std::string escape_cell(const std::string& s) {
  std::string out;
  for (char ch : s) out += (ch == '|') ? std::string("\\|") : std::string(1, ch);
  return out;
}

const Registration config_command{"config", [](CLI::App& app, const GlobalOptions&) {
  auto* cmd = app.add_subcommand("config", "show the resolved config or the reference of every key");
  cmd->require_subcommand(1);

  struct Show {
    std::string path;
    std::vector<std::string> overrides;
  };
  auto show = std::make_shared<Show>();
  auto* show_cmd = cmd->add_subcommand("show", "print the resolved config (defaults, file, --set) as JSON");
  add_config_options(*show_cmd, show->path, show->overrides, false);

  auto* keys_cmd = cmd->add_subcommand("keys", "print every config key with its type, default and meaning (Markdown)");

  return std::function<int()>([show, show_cmd, keys_cmd]() {
    if (show_cmd->parsed()) {
      const RunConfig c = load_run_config(show->path, show->overrides);
      std::cout << to_json(c).dump(2) << "\n";
      return 0;
    }
    if (keys_cmd->parsed()) {
      std::cout << "| key | type | default | meaning |\n|---|---|---|---|\n";
      for (const auto& k : config_keys())
        std::cout << "| `" << k.path << "` | " << escape_cell(k.type) << " | `" << k.default_value
                  << "` | " << escape_cell(k.doc) << " |\n";
      return 0;
    }
    return 2;
  });
}};

}  // namespace
}  // namespace metalm::cli
