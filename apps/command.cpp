#include "command.hpp"

namespace metalm::cli {

std::vector<RegisteredCommand>& registry() {
  static std::vector<RegisteredCommand> commands;
  return commands;
}

Registration::Registration(std::string name, CommandSetup setup) {
  registry().push_back({std::move(name), std::move(setup)});
}

void add_config_options(CLI::App& cmd, std::string& config_path, std::vector<std::string>& overrides,
                        bool config_required) {
  auto* opt = cmd.add_option("-c,--config", config_path, "experiment config (JSON)")
                  ->type_name("FILE")
                  ->check(CLI::ExistingFile);
  if (config_required) opt->required();
  cmd.add_option("--set", overrides, "override a config key, e.g. --set model.n_layer=6 (repeatable)")
      ->type_name("KEY=VALUE")
      ->take_all()
      ->allow_extra_args(false);
}

}  // namespace metalm::cli
