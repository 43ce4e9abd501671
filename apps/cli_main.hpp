// The body shared by the two executables of the CLI: `metalm`, which loads no
// libtorch and runs the commands that do no tensor work itself, and
// `metalm-tensor`, which runs every command. Each has a small main() (metalm.cpp,
// metalm_tensor.cpp); the options, the parsing and the mapping of errors to
// one-line messages and exit codes are here, once.
#pragma once

#include <exception>
#include <string>

namespace metalm::cli {

// What a command line asks for, read from argv before it is parsed: the global
// options (and their values) are skipped, the first other word is the
// subcommand.
enum class Workload {
  Light,   // --version, or a command that only reads configs or text (config, tokenize, prepare, tokenizer-train)
  Tensor,  // any other subcommand, known or not (metalm-tensor names an unknown one and the nearest command)
  Other,   // no subcommand: --help, or a usage error
};
Workload classify(int argc, char** argv);

// The message for an exception that is neither metalm's, CLI11's nor
// std::bad_alloc (metalm-tensor shortens libtorch's); nullptr: what().
using DescribeError = std::string (*)(const std::exception& e);

// Parses argv against the global options and every registered command, runs
// the chosen command and returns the process exit code: 0, 2 for usage and
// config errors, 1 for anything else, each error one line on stderr.
int run(int argc, char** argv, DescribeError describe);

// Prints "metalm: error: MESSAGE" as one line on stderr (the lines of a
// multi-line message joined) and returns `code`.
int fail(const std::string& message, int code);

}  // namespace metalm::cli
