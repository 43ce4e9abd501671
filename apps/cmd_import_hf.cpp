// `metalm import-hf`: a Hugging Face GPT-2 checkpoint directory -> a metalm
// checkpoint (see metalm/train/hf_import.hpp and docs/pretrained.md).
#include <spdlog/spdlog.h>

#include <iostream>

#include "command.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/train/hf_import.hpp"

namespace metalm::cli {
namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

const Registration import_hf_command{"import-hf", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string from, out, name;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("import-hf", "import a Hugging Face GPT-2 checkpoint (config.json + model.safetensors)");
  cmd->add_option("--from", o->from, "Hugging Face checkpoint directory (e.g. from `huggingface-cli download gpt2`)")
      ->type_name("DIR")
      ->required();
  cmd->add_option("--out", o->out, "metalm checkpoint directory to write (new or empty, unless --force)")
      ->type_name("CKPT_DIR")
      ->required();
  cmd->add_flag("--force", o->force, "replace an existing --out directory and everything in it");
  cmd->add_option("--name", o->name, "run name recorded in the config (default: the source directory's name)")
      ->type_name("NAME");

  return std::function<int()>([o, &global]() {
    check_output(o->out, OutputKind::Directory, o->force, "--out", {{"--from", o->from}});
    set_threads(global.threads);
    ImportHfOptions options;
    options.name = o->name;
    const ImportHfResult r = import_hf_gpt2(o->from, o->out, options);
    const ModelConfig& m = r.config.model;
    spdlog::info("import-hf: {} -> {}: {} parameters, {} layers x {} heads, d_model {}, context {}, vocab {}, "
                 "mlp {}, keys {}, stored {}, {} buffer(s) ignored, tokenizer {}",
                 o->from, r.checkpoint_dir, r.n_params, m.n_layer, m.n_head, m.d_model, m.context, m.vocab_size,
                 to_string(m.mlp), r.key_prefix.empty() ? "GPT2Model (no prefix)" : "transformer.*",
                 join(r.dtypes), r.ignored_tensors, r.tokenizer.empty() ? "none" : r.tokenizer);
    std::cout << r.checkpoint_dir << "\n";
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
