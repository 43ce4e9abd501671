// `metalm export`: a checkpoint's weights as one safetensors file, with
// metalm's names or (--layout hf) GPT2LMHeadModel's, for Python users.
#include <spdlog/spdlog.h>

#include "command.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/hf_import.hpp"

namespace metalm::cli {
namespace {

const Registration export_command{"export", [](CLI::App& app, const GlobalOptions&) {
  struct Options {
    std::string checkpoint, out, layout = "metalm", hf_config;
    bool allow_nonfinite = false, force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("export", "write a checkpoint's weights to a safetensors file (metalm or HF GPT-2 names)");
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint directory, or a run directory (its newest checkpoint)")
      ->type_name("DIR")
      ->required();
  cmd->add_option("--out", o->out, "safetensors file to write (must not exist, unless --force)")
      ->type_name("FILE.safetensors")
      ->required();
  cmd->add_option("--layout", o->layout,
                  "metalm: our names, Linear [out, in]; hf: GPT2LMHeadModel names, Conv1D [in, out] "
                  "(GPT-2-shaped models only)")
      ->type_name("LAYOUT")
      ->check(CLI::IsMember({"metalm", "hf"}))
      ->capture_default_str();
  cmd->add_option("--hf-config", o->hf_config,
                  "with --layout hf: also write the matching Hugging Face config.json here")
      ->type_name("FILE");
  cmd->add_flag("--force", o->force, "replace existing --out and --hf-config files");
  cmd->add_flag("--allow-nonfinite", o->allow_nonfinite,
                "export weights holding NaN or Inf as they are (forensics; refused by default)");

  return std::function<int()>([o]() {
    const WeightsLayout layout = o->layout == "hf" ? WeightsLayout::Hf : WeightsLayout::Metalm;
    if (!o->hf_config.empty() && layout != WeightsLayout::Hf)
      throw ConfigError("export: --hf-config needs --layout hf");
    // export creates the directories of its files: only the path rule applies.
    const CommandInput checkpoint{"--checkpoint", checkpoint_to_load(o->checkpoint), /*tree=*/true};
    check_output_path(o->out, OutputKind::File, o->force, "--out", {checkpoint});
    if (!o->hf_config.empty())
      check_output_path(o->hf_config, OutputKind::File, o->force, "--hf-config", {checkpoint, {"--out", o->out}});
    export_weights(o->checkpoint, o->out, layout, o->hf_config, LoadWeightsOptions{o->allow_nonfinite});
    spdlog::info("export: {} -> {} ({} layout{}{})", o->checkpoint, o->out, o->layout,
                 o->hf_config.empty() ? "" : ", config ", o->hf_config);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
