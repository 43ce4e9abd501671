#include "cli_main.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <new>
#include <set>
#include <utility>
#include <vector>

#include "command.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/log.hpp"
#include "metalm/core/suggest.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/core/version.hpp"

namespace metalm::cli {
namespace {

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
        if (text.empty() || *end != '\0') return "\"" + excerpt(text) + "\" is not a number";
        if (!std::isfinite(v)) return excerpt(text) + " is not a finite number";
        if (positive ? !(v > 0) : !(v >= 0))
          return excerpt(text) + " must be " + (positive ? "positive" : "0 or more");
        return "";
      });
    }
  }
  for (CLI::App* sub : app.get_subcommands({})) humanize_range_checks(*sub);
}

// The first word of argv that is neither a global option nor its value (the
// subcommand), or "" when there is none or help comes first.
std::string subcommand_word(int argc, char** argv, bool* version) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--threads" || a == "--log-level") {
      ++i;  // the option's value
      continue;
    }
    // Help before the subcommand is the help of the whole program, which
    // lists every command.
    if (a == "-h" || a == "--help") return "";
    if (a == "--version" && version) *version = true;
    if (a.rfind("-", 0) == 0) continue;
    return a;
  }
  return "";
}

// "unknown command 'trian' (did you mean 'train'?) ...", or "" when `word`
// names a registered command (metalm-tensor registers every one; the
// launcher hands it every word that is not one of its own).
std::string unknown_command(const std::string& word) {
  std::vector<std::string> names;
  for (const auto& command : registry()) names.push_back(command.name);
  if (word.empty() || std::find(names.begin(), names.end(), word) != names.end()) return "";
  std::string message = "unknown command '" + excerpt(word) + "'";
  const std::string hint = closest_match(word, names);
  if (!hint.empty()) message += " (did you mean '" + hint + "'?)";
  return message + "; `metalm --help` lists the commands";
}

}  // namespace

Workload classify(int argc, char** argv) {
  // The commands `metalm` runs without libtorch (their files, cmd_config.cpp,
  // cmd_tokenize.cpp, cmd_prepare.cpp and cmd_tokenizer_train.cpp, include no
  // torch header and are all its CMake target links).
  static const std::set<std::string> light{"config", "tokenize", "prepare", "tokenizer-train"};
  bool version = false;
  const std::string word = subcommand_word(argc, argv, &version);
  if (word.empty()) return version ? Workload::Light : Workload::Other;
  return light.count(word) ? Workload::Light : Workload::Tensor;
}

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

int run(int argc, char** argv, DescribeError describe) {
  install_mapped_file_fault_handler();

  CLI::App app{"metalm: causal language models and the inner optimization of their forward pass"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("metalm ") + version());
  app.option_defaults()->always_capture_default();
  GlobalOptions global;
  app.add_option("--threads", global.threads,
                 "intra-op threads; 0 means all cores (at most " + std::to_string(kMaxThreads) + ")")
      ->type_name("N")
      ->check(int_range(0, kMaxThreads))
      ->capture_default_str();
  app.add_option("--log-level", global.log_level, "trace | debug | info | warn | error | critical | off")
      ->type_name("LEVEL")
      ->capture_default_str();

  // By name, so --help lists the commands in the same order whatever order
  // the linker gave their registrations.
  std::vector<const RegisteredCommand*> commands;
  for (const auto& command : registry()) commands.push_back(&command);
  std::sort(commands.begin(), commands.end(), [](auto* a, auto* b) { return a->name < b->name; });
  std::vector<std::pair<CLI::App*, std::function<int()>>> runners;
  for (const RegisteredCommand* command : commands) {
    const std::size_t before = app.get_subcommands({}).size();
    auto run_command = command->setup(app, global);
    const auto subs = app.get_subcommands({});
    for (std::size_t i = before; i < subs.size(); ++i) runners.emplace_back(subs[i], run_command);
  }
  humanize_range_checks(app);

  // CLI11 would say only that a subcommand is required.
  if (const std::string unknown = unknown_command(subcommand_word(argc, argv, nullptr)); !unknown.empty())
    return fail(unknown, 2);
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
    init_logging(global.log_level);
    for (auto& [sub, run_command] : runners)
      if (sub->parsed()) {
        const int code = run_command();
        // What a command printed on standard output counts only if it got
        // there: a full disk or a closed pipe is an error, not exit 0.
        std::cout.flush();
        if (!std::cout || std::fflush(stdout) != 0 || std::ferror(stdout))
          throw IoError("cannot write to standard output (a full disk or a closed pipe?)");
        return code;
      }
    return fail("no subcommand given (see --help)", 2);
  } catch (const ConfigError& e) {
    return fail(e.what(), 2);
  } catch (const Error& e) {
    return fail(e.what(), 1);
  } catch (const CLI::ParseError& e) {
    return fail(e.what(), 2);
  } catch (const std::bad_alloc&) {
    return fail("out of memory (are the sizes of the model or the options larger than intended?)", 1);
  } catch (const std::exception& e) {
    return fail(describe ? describe(e) : std::string(e.what()), 1);
  }
}

}  // namespace metalm::cli
