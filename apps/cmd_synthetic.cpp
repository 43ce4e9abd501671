// `metalm synthetic-icl`: the constructed ground truth of the analyser. A
// linear self-attention layer built to take one gradient-descent step on
// in-context linear regression is analysed for several context sizes N;
// alignment should approach 1 and the step size eta as N grows (figure F8).
#include <spdlog/spdlog.h>

#include <cmath>
#include <sstream>

#include "command.hpp"
#include "metalm/analysis/linear_icl.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/threads.hpp"

namespace metalm::cli {
namespace {

double num(const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

std::vector<int64_t> parse_sizes(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 1)
      throw ConfigError("--n: expected comma-separated positive integers, got '" + text + "'");
    out.push_back(v);
  }
  if (out.empty()) throw ConfigError("--n: expected at least one context size");
  return out;
}

const Registration synthetic_command{"synthetic-icl", [](CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string sizes = "16,64,256,1024,4096";
    LinearIclOptions icl;
    std::string out;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "synthetic-icl", "analyse a linear self-attention layer constructed to take one GD step on in-context regression");
  cmd->add_option("--n", o->sizes, "context sizes N, comma-separated")->type_name("N,N,...")->capture_default_str();
  cmd->add_option("--d-x", o->icl.d_x, "input dimension")->type_name("D")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--d-y", o->icl.d_y, "output dimension; 0 means d_x")->type_name("D")->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--eta", o->icl.eta, "step size of the gradient step the layer implements")->type_name("ETA")
      ->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--batch", o->icl.batch, "sequences per context size")->type_name("B")->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--seed", o->icl.seed, "seed of the sampled tasks and the random-target control")->type_name("S")
      ->capture_default_str();
  cmd->add_option("--out", o->out, "output JSON file (must not exist, unless --force)")->type_name("FILE")->required();
  cmd->add_flag("--force", o->force, "replace an existing --out file");

  return std::function<int()>([o, &global]() {
    check_output_path(o->out, OutputKind::File, o->force, "--out");
    set_threads(global.threads);
    const std::vector<int64_t> sizes = parse_sizes(o->sizes);
    const nlohmann::json result = linear_icl_sweep(sizes, o->icl);
    for (const auto& p : result["points"])
      spdlog::info("n {:>6}: alignment {:.4f} (random target {:.4f}), step size {:.4f} (eta {}), loss {:.4f} -> {:.4f}",
                   p["n"].get<int64_t>(), num(p["alignment"]["mean"]), num(p["alignment_uniform"]["mean"]),
                   num(p["step_size"]["mean"]), o->icl.eta, num(p["loss_before"]), num(p["loss_after"]));
    write_json_file(o->out, result);
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
