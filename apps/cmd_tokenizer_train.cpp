// `metalm tokenizer-train`: learn a byte-level BPE from a corpus.
#include <spdlog/spdlog.h>

#include <chrono>

#include "command.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/data/bpe_trainer.hpp"
#include "metalm/data/corpus.hpp"

namespace metalm::cli {
namespace {

const Registration tokenizer_train_command{"tokenizer-train", [](CLI::App& app, const GlobalOptions&) {
  struct Options {
    std::vector<std::string> inputs;
    std::string format = "text";
    int64_t vocab_size = 4096;
    std::string out;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("tokenizer-train",
                                 "learn a byte-level BPE (GPT-2 pre-tokenisation); writes encoder.json + vocab.bpe, "
                                 "loadable as bpe:DIR");
  cmd->add_option("--input", o->inputs, "corpus files or directories")->type_name("PATH")->required();
  cmd->add_option("--format", o->format, "text | brown")->type_name("FORMAT")
      ->check(CLI::IsMember({"text", "brown"}))->capture_default_str();
  cmd->add_option("--vocab-size", o->vocab_size, "tokens including the 256 bytes and end-of-text")
      ->type_name("N")->check(CLI::Range(int64_t{257}, int64_t{1} << 24))->capture_default_str();
  cmd->add_option("--out", o->out, "output directory (new or empty, unless --force)")->type_name("DIR")->required();
  cmd->add_flag("--force", o->force, "replace an existing --out directory and everything in it");
  return std::function<int()>([o]() {
    std::vector<CommandInput> inputs;
    for (const auto& input : o->inputs) inputs.push_back({"--input", input, /*tree=*/true});
    check_output(o->out, OutputKind::Directory, o->force, "--out", inputs);
    const auto start = std::chrono::steady_clock::now();
    const auto docs = read_corpus(o->inputs, o->format);
    std::vector<std::string> texts;
    texts.reserve(docs.size());
    for (const auto& d : docs) texts.push_back(d.text);
    const auto bpe = train_bpe(texts, o->vocab_size);
    write_bpe_files(bpe, o->out);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    spdlog::info("tokenizer-train: {} tokens ({} merges) from {} documents in {:.2f} s -> {} (use --tokenizer bpe:{})",
                 bpe.tokens.size(), bpe.merges.size(), docs.size(), secs, o->out, o->out);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
