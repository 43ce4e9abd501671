// metalm: train causal Transformer LMs and analyse the inner optimization of
// their forward pass. One binary; subcommands live in apps/cmd_*.cpp.
#include <c10/util/Exception.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <new>
#include <memory>
#include <set>
#include <string>

#include "command.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/log.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/core/version.hpp"

namespace {

// One line on stderr, whatever went wrong (libtorch's messages can span
// several lines: they are joined).
int fail(const std::string& message, int code) {
  std::string line;
  for (char c : message) {
    if (c == '\n' || c == '\r') {
      if (!line.empty() && line.back() != ' ') line += ' ';
    } else {
      line += c;
    }
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  std::fprintf(stderr, "metalm: error: %s\n", line.c_str());
  return code;
}

// CLI11's PositiveNumber and NonNegativeNumber checks name their upper bound,
// DBL_MAX, in full (a 309-digit number); every option that uses them, in any
// subcommand, gets the same check with a message in words instead. They are
// recognised by the description CLI11 gives them.
void humanize_range_checks(CLI::App& app) {
  for (CLI::Option* option : app.get_options()) {
    for (int i = 0;; ++i) {
      CLI::Validator* check = nullptr;
      try {
        check = option->get_validator(i);
      } catch (const CLI::OptionNotFound&) {
        break;
      }
      const std::string kind = check->get_description();
      if (kind != "POSITIVE" && kind != "NONNEGATIVE") continue;
      const bool positive = kind == "POSITIVE";
      check->operation([positive](std::string& text) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(text.c_str(), &end);
        if (text.empty() || *end != '\0') return "\"" + metalm::excerpt(text) + "\" is not a number";
        if (positive ? !(v > 0) : !(v >= 0))
          return metalm::excerpt(text) + " must be " + (positive ? "positive" : "0 or more");
        return "";
      });
    }
  }
  for (CLI::App* sub : app.get_subcommands({})) humanize_range_checks(*sub);
}

// Whether the command line asks for tensor work: anything but --version,
// --help and the commands that only read configs or text (they start in one
// load of libtorch instead of two, and need neither the OpenMP policy nor the
// allocator settings).
bool does_tensor_work(int argc, char** argv) {
  static const std::set<std::string> light{"config", "tokenize", "prepare", "tokenizer-train"};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" || a == "--log-level") {
      ++i;  // the option's value
      continue;
    }
    if (a.rfind("-", 0) == 0) continue;
    return light.count(a) == 0;  // the subcommand
  }
  return false;  // --version, --help, or nothing
}

}  // namespace

int main(int argc, char** argv) {
  if (does_tensor_work(argc, argv)) {
    metalm::ensure_passive_omp_wait_policy(argv);
    metalm::keep_freed_memory();
  }
  metalm::install_mapped_file_fault_handler();

  CLI::App app{"metalm: causal language models and the inner optimization of their forward pass"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("metalm ") + metalm::version());
  app.option_defaults()->always_capture_default();
  metalm::cli::GlobalOptions global;
  app.add_option("--threads", global.threads,
                 "intra-op threads; 0 means all cores (at most " + std::to_string(metalm::kMaxThreads) + ")")
      ->type_name("N")
      ->check(metalm::cli::int_range(0, metalm::kMaxThreads))
      ->capture_default_str();
  app.add_option("--log-level", global.log_level,
                 "trace | debug | info | warn | error | critical | off")
      ->type_name("LEVEL")
      ->capture_default_str();

  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  for (const auto& command : metalm::cli::registry()) {
    const std::size_t before = app.get_subcommands({}).size();
    auto run = command.setup(app, global);
    const auto subs = app.get_subcommands({});
    for (std::size_t i = before; i < subs.size(); ++i) runners.emplace_back(subs[i], run);
  }
  humanize_range_checks(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return fail(e.what(), 2);
  }

  try {
    metalm::init_logging(global.log_level);
    for (auto& [sub, run] : runners)
      if (sub->parsed()) return run();
    return fail("no subcommand given (see --help)", 2);
  } catch (const metalm::ConfigError& e) {
    return fail(e.what(), 2);
  } catch (const metalm::Error& e) {
    return fail(e.what(), 1);
  } catch (const CLI::ParseError& e) {
    return fail(e.what(), 2);
  } catch (const c10::Error& e) {
    return fail(std::string("torch: ") + e.what_without_backtrace(), 1);
  } catch (const std::bad_alloc&) {
    return fail("out of memory (are the sizes of the model or the options larger than intended?)", 1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  }
}
