// `metalm tokenize`: text -> ids (decimal, single spaces, one line per input
// file) and, with --decode, ids -> the exact text.
#include <fstream>
#include <iostream>
#include <sstream>

#include "command.hpp"
#include "metalm/core/error.hpp"
#include "metalm/data/tokenizer.hpp"

namespace metalm::cli {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<int64_t> parse_ids(const std::string& text, const std::string& path) {
  std::vector<int64_t> ids;
  std::size_t pos = 0;
  while (pos < text.size()) {
    const char c = text[pos];
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      ++pos;
      continue;
    }
    if (c < '0' || c > '9')
      throw FormatError(path + ": byte offset " + std::to_string(pos) + ": expected a decimal token id");
    int64_t v = 0;
    while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
      v = v * 10 + (text[pos++] - '0');
      if (v > (int64_t{1} << 40)) throw FormatError(path + ": token id too large");
    }
    ids.push_back(v);
  }
  return ids;
}

const Registration tokenize_command{"tokenize", [](CLI::App& app, const GlobalOptions&) {
  struct Options {
    std::string tokenizer = "gpt2";
    std::vector<std::string> inputs;
    std::string output;
    bool decode = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("tokenize", "print the token ids of text files (or, with --decode, the text of ids)");
  cmd->add_option("--tokenizer", o->tokenizer, "byte | gpt2 | gpt2:DIR | bpe:DIR")->type_name("SPEC")->capture_default_str();
  cmd->add_option("--input", o->inputs, "input file(s); one output line of ids per file")->type_name("FILE")->required();
  cmd->add_option("--output", o->output, "write here instead of stdout")->type_name("FILE");
  cmd->add_flag("--decode", o->decode, "read decimal ids and print their text");

  return std::function<int()>([o]() {
    const auto tok = make_tokenizer(o->tokenizer);
    std::string out;
    for (const auto& path : o->inputs) {
      const std::string text = slurp(path);
      if (o->decode) {
        out += tok->decode(parse_ids(text, path));
        continue;
      }
      std::vector<int64_t> ids;
      try {
        ids = tok->encode(text);
      } catch (const FormatError& e) {
        throw FormatError(path + ": " + e.what());
      }
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
      std::ofstream f(o->output, std::ios::binary);
      f.write(out.data(), static_cast<std::streamsize>(out.size()));
      if (!f) throw IoError("cannot write " + o->output);
    }
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
