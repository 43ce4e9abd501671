// `metalm tokenize`: text -> ids (decimal, single spaces, one line per input
// file) and, with --decode, ids -> the exact text.
#include <fstream>
#include <iostream>

#include "command.hpp"
#include "token_ids.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/data/tokenizer.hpp"

namespace metalm::cli {
namespace {

const Registration tokenize_command{"tokenize", [](CLI::App& app, const GlobalOptions&) {
  struct Options {
    std::string tokenizer = "gpt2";
    std::vector<std::string> inputs;
    std::string output;
    bool decode = false, force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("tokenize", "print the token ids of text files (or, with --decode, the text of ids)");
  cmd->add_option("--tokenizer", o->tokenizer, "byte | gpt2 | gpt2:DIR | bpe:DIR")->type_name("SPEC")->capture_default_str();
  cmd->add_option("--input", o->inputs, "input file(s); one output line of ids per file")->type_name("FILE")->required();
  cmd->add_option("--output", o->output, "write here instead of stdout (must not exist, unless --force)")
      ->type_name("FILE");
  cmd->add_flag("--force", o->force, "replace an existing --output file");
  cmd->add_flag("--decode", o->decode, "read decimal ids and print their text");

  return std::function<int()>([o]() {
    std::vector<CommandInput> inputs = tokenizer_input(o->tokenizer);
    for (const auto& input : o->inputs) inputs.push_back({"--input", input});
    if (!o->output.empty()) check_output(o->output, OutputKind::File, o->force, "--output", inputs);
    const auto tok = make_tokenizer(o->tokenizer);
    std::string out;
    for (const auto& path : o->inputs) {
      const std::string text = read_file(path, InputKind::Text);
      if (o->decode) {
        out += tok->decode(parse_token_ids(text, path, tok->vocab_size(), "the vocabulary of " + o->tokenizer));
        continue;
      }
      const std::vector<int64_t> ids = encode_text(*tok, text, path);
      for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i) out += ' ';
        out += std::to_string(ids[i]);
      }
      out += '\n';
    }
    if (o->output.empty()) {
      std::cout.write(out.data(), static_cast<std::streamsize>(out.size()));
      std::cout.flush();
    } else {
      write_file_atomic(o->output, out);
    }
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
