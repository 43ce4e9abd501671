// `metalm synthetic-icl`: the constructed ground truth of the analyser. A
// linear self-attention layer built to take one gradient-descent step on
// in-context linear regression is analysed for several context sizes N;
// alignment should approach 1 and the step size eta as N grows (figure F8).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <sstream>

#include "command.hpp"
#include "metalm/analysis/linear_icl.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/core/threads.hpp"

namespace metalm::cli {
namespace {

double num(const nlohmann::json& v) { return v.is_number() ? v.get<double>() : std::nan(""); }

// Widths up to 4,096 and step sizes from 1e-6 to 1e6: within them the
// statistics stay finite in float64 (a step of 1e-300 would vanish in
// ‖Δ‖², one of 1e300 overflow it).
constexpr int64_t kMaxIclDim = 4096;
constexpr double kMinEta = 1e-6, kMaxEta = 1e6;

// Context sizes: each from 1 to kMaxTokens, as every sequence length of the CLI.
std::vector<int64_t> parse_sizes(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  const std::string expected = "expected comma-separated integers from 1 to " + with_commas(kMaxTokens);
  while (std::getline(ss, item, ',')) {
    std::size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size())
      throw ConfigError("--n: \"" + excerpt(item) + "\" is not an integer; " + expected);
    if (v < 1 || v > kMaxTokens) throw ConfigError("--n: " + excerpt(item) + " is out of range; " + expected);
    out.push_back(v);
  }
  if (out.empty()) throw ConfigError("--n: expected at least one context size");
  return out;
}

// What one point of the sweep holds at once, in float64, for the largest N:
// about 32 [B, N+1, D] tensors (tokens, projections and their padded chunks,
// the update, the analysis's gradients) plus the chunked attention's
// [B, (N+1)/16, D, D] running states (three of them) and [B, N+1, 16] scores.
// An upper-end estimate: measured peak RSS above the process's own 179 MB was
// 266 MB where it says 568 (B 16, N 16,384, D 8) and 551 MB where it says 900
// (B 4, N 4,096, D 128).
double sweep_bytes(const std::vector<int64_t>& sizes, const LinearIclOptions& o) {
  const double n = static_cast<double>(*std::max_element(sizes.begin(), sizes.end())) + 1;
  const double b = static_cast<double>(o.batch);
  const double d = static_cast<double>(o.d_x + (o.d_y ? o.d_y : o.d_x));
  return 8.0 * (32.0 * b * n * d + 16.0 * b * n + 3.0 * b * (n / 16.0 + 1.0) * d * d);
}

// JSON has no NaN: a statistic that is not finite would be written as null.
void require_finite(const nlohmann::json& result, const LinearIclOptions& o) {
  for (const auto& p : result["points"]) {
    for (const double v : {num(p["alignment"]["mean"]), num(p["step_size"]["mean"]), num(p["loss_before"]),
                           num(p["loss_after"])})
      if (!std::isfinite(v))
        throw NumericError("synthetic-icl: the statistics at n = " + std::to_string(p["n"].get<int64_t>()) +
                           " are not finite (--eta " + std::to_string(o.eta) + ", --d-x " + std::to_string(o.d_x) +
                           "); nothing was written");
  }
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
  cmd->add_option("--n", o->sizes, "context sizes N, comma-separated, each 1 to 1,048,576")->type_name("N,N,...")
      ->capture_default_str();
  cmd->add_option("--d-x", o->icl.d_x, "input dimension")->type_name("D")->check(int_range(1, kMaxIclDim))
      ->capture_default_str();
  cmd->add_option("--d-y", o->icl.d_y, "output dimension; 0 means d_x")->type_name("D")->check(int_range(0, kMaxIclDim))
      ->capture_default_str();
  cmd->add_option("--eta", o->icl.eta, "step size of the gradient step the layer implements")->type_name("ETA")
      ->check(real_range(kMinEta, kMaxEta))->capture_default_str();
  cmd->add_option("--batch", o->icl.batch, "sequences per context size")->type_name("B")->check(int_range(1, kMaxBatch))
      ->capture_default_str();
  cmd->add_option("--seed", o->icl.seed, "seed of the sampled tasks and the random-target control")->type_name("S")
      ->check(seed_range())->capture_default_str();
  cmd->add_option("--out", o->out, "output JSON file (must not exist, unless --force)")->type_name("FILE")->required();
  cmd->add_flag("--force", o->force, "replace an existing --out file");

  return std::function<int()>([o, &global]() {
    check_output(o->out, OutputKind::File, o->force, "--out");
    const std::vector<int64_t> sizes = parse_sizes(o->sizes);
    check_memory_estimate(sweep_bytes(sizes, o->icl),
                          "synthetic-icl --batch " + std::to_string(o->icl.batch) + " x --n " +
                              std::to_string(*std::max_element(sizes.begin(), sizes.end())) + " (d_x + d_y = " +
                              std::to_string(o->icl.d_x + (o->icl.d_y ? o->icl.d_y : o->icl.d_x)) + ")");
    set_threads(global.threads);
    const nlohmann::json result = linear_icl_sweep(sizes, o->icl);
    require_finite(result, o->icl);
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
