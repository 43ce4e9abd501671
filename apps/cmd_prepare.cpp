// `metalm prepare`: tokenize a corpus into train.bin, val.bin and meta.json.
#include "command.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/data/prepare.hpp"

namespace metalm::cli {
namespace {

const Registration prepare_command{"prepare", [](CLI::App& app, const GlobalOptions&) {
  auto o = std::make_shared<PrepareOptions>();
  auto force = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("prepare", "tokenize a corpus into train.bin, val.bin and meta.json");
  cmd->add_option("--tokenizer", o->tokenizer, "byte | gpt2 | gpt2:DIR | bpe:DIR")->type_name("SPEC")->capture_default_str();
  cmd->add_option("--input", o->inputs, "corpus files or directories")->type_name("PATH")->required();
  cmd->add_option("--format", o->format, "text (one document per file) | brown (tagged Brown corpus files)")
      ->type_name("FORMAT")->check(CLI::IsMember({"text", "brown"}))->capture_default_str();
  cmd->add_option("--val-fraction", o->val_fraction, "share of documents held out for validation")
      ->type_name("F")->check(CLI::Range(0.0, 0.999999))->capture_default_str();
  cmd->add_option("--seed", o->seed, "seed of the document split")->type_name("S")->capture_default_str();
  cmd->add_option("--out", o->out, "output directory (new or empty, unless --force)")->type_name("DIR")->required();
  cmd->add_flag("--force", *force, "replace an existing --out directory and everything in it");
  return std::function<int()>([o, force]() {
    std::vector<CommandInput> inputs = tokenizer_input(o->tokenizer);
    for (const auto& input : o->inputs) inputs.push_back({"--input", input, /*tree=*/true});
    check_output(o->out, OutputKind::Directory, *force, "--out", inputs);
    prepare_dataset(*o);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
