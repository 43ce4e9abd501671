// Loads an experiment config with the installed library and prints the
// version and the resolved model section: proof that find_package(metalm)
// gives a usable library, headers and dependencies.
#include <iostream>

#include <metalm/config/json.hpp>
#include <metalm/core/error.hpp>
#include <metalm/core/version.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer CONFIG.json\n";
    return 2;
  }
  try {
    const metalm::RunConfig config = metalm::load_run_config(argv[1]);
    // The headers' version and the linked library's: equal in one install.
    std::cout << "metalm " << METALM_VERSION << " (library " << metalm::version() << ")\n";
    std::cout << metalm::to_json(config.model).dump() << "\n";
  } catch (const metalm::Error& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
