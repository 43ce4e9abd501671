#include "metalm/train/checkpoint.hpp"

#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <regex>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/model/weights.hpp"
#include "metalm/train/rng_state.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

constexpr const char* kFormat = "metalm-checkpoint";
constexpr int kVersion = 1;

nlohmann::json state_to_json(const CheckpointState& s, bool has_optimizer) {
  nlohmann::json j;
  j["format"] = kFormat;
  j["version"] = kVersion;
  j["step"] = s.step;
  j["tokenizer"] = s.tokenizer;
  j["best_val_loss"] = std::isfinite(s.best_val_loss) ? nlohmann::json(s.best_val_loss) : nlohmann::json();
  j["rng"] = s.rng;
  j["sampler"] = s.sampler;
  j["extra"] = s.extra.is_null() ? nlohmann::json::object() : s.extra;
  j["has_optimizer"] = has_optimizer;
  return j;
}

CheckpointState state_from_json(const nlohmann::json& j, const std::string& path) {
  if (!j.is_object() || j.value("format", "") != kFormat)
    throw FormatError(path + ": not a metalm checkpoint state (expected \"format\": \"" + kFormat + "\")");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != kVersion)
    throw FormatError(path + ": unsupported checkpoint version (expected " + std::to_string(kVersion) + ")");
  if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() < 0)
    throw FormatError(path + ": \"step\" must be a non-negative integer");
  CheckpointState s;
  s.step = j["step"].get<int64_t>();
  if (j.contains("tokenizer") && j["tokenizer"].is_string()) s.tokenizer = j["tokenizer"].get<std::string>();
  const auto best = j.value("best_val_loss", nlohmann::json());
  s.best_val_loss = best.is_number() ? best.get<double>() : std::numeric_limits<double>::infinity();
  s.rng = j.value("rng", nlohmann::json());
  s.sampler = j.value("sampler", nlohmann::json());
  s.extra = j.value("extra", nlohmann::json::object());
  return s;
}

bool is_complete_checkpoint(const fs::path& dir) {
  return fs::is_regular_file(dir / "state.json") && fs::is_regular_file(dir / "model.safetensors") &&
         fs::is_regular_file(dir / "config.json");
}

void replace_dir(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (fs::exists(to)) {
    // rename() cannot replace a non-empty directory: move the old one aside
    // first, so a crash here leaves either the old or the new one complete.
    const fs::path old = to.string() + ".old-" + std::to_string(::getpid());
    fs::remove_all(old, ec);
    fs::rename(to, old, ec);
    if (ec) throw IoError("cannot move aside " + to.string() + ": " + ec.message());
    fs::rename(from, to, ec);
    if (ec) throw IoError("cannot rename " + from.string() + " to " + to.string() + ": " + ec.message());
    fs::remove_all(old, ec);
    return;
  }
  fs::rename(from, to, ec);
  if (ec) throw IoError("cannot rename " + from.string() + " to " + to.string() + ": " + ec.message());
}

}  // namespace

std::string checkpoint_dir(const std::string& run_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return (fs::path(run_dir) / "checkpoints" / name).string();
}

void save_checkpoint(const std::string& dir, const RunConfig& config, CausalTransformer& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointState& state) {
  const fs::path target(dir);
  const fs::path tmp = target.string() + ".tmp-" + std::to_string(::getpid());
  std::error_code ec;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw IoError("cannot create checkpoint directory " + tmp.string() + ": " + ec.message());
  try {
    write_json_file((tmp / "config.json").string(), to_json(config));
    save_weights(*model, (tmp / "model.safetensors").string(),
                 {{"format", "metalm"}, {"step", std::to_string(state.step)}});
    if (optimizer != nullptr) {
      torch::serialize::OutputArchive archive;
      optimizer->save(archive);
      archive.save_to((tmp / "optimizer.pt").string());
    }
    // state.json last: a directory without it is never taken for a checkpoint,
    // even if the rename below were not atomic on some file system.
    write_json_file((tmp / "state.json").string(), state_to_json(state, optimizer != nullptr));
  } catch (const c10::Error& e) {
    fs::remove_all(tmp, ec);
    throw IoError("cannot write checkpoint " + dir + ": " + e.what_without_backtrace());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  replace_dir(tmp, target);
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  static const std::regex name_re("step_([0-9]+)");
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    // Leftovers of interrupted writes (step_X.tmp-PID, step_X.old-PID) and
    // directories without state.json are not checkpoints.
    if (!std::regex_match(name, m, name_re) || !entry.is_directory() || !is_complete_checkpoint(entry.path()))
      continue;
    found.emplace_back(std::stoll(m[1].str()), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

LoadedCheckpoint load_checkpoint(const std::string& dir_or_run_dir) {
  fs::path dir(dir_or_run_dir);
  if (!fs::exists(dir)) throw IoError("checkpoint not found: " + dir_or_run_dir);
  if (!fs::is_regular_file(dir / "state.json")) {
    const auto all = list_checkpoints(dir_or_run_dir);
    if (all.empty())
      throw IoError("no checkpoint in " + dir_or_run_dir +
                    " (expected DIR/state.json or a run directory with checkpoints/step_N/state.json)");
    dir = all.back();
  }
  if (!is_complete_checkpoint(dir))
    throw FormatError(dir.string() + ": incomplete checkpoint (needs config.json, model.safetensors, state.json)");

  LoadedCheckpoint out;
  out.path = dir.string();
  const std::string config_path = (dir / "config.json").string();
  out.config = run_config_from_json(read_json_file(config_path), config_path);
  resolve(out.config);
  const std::string state_path = (dir / "state.json").string();
  out.state = state_from_json(read_json_file(state_path), state_path);
  // Building the model draws its (discarded) initial weights from the global
  // generator; the caller's random stream is left as it was.
  out.model = preserving_rng_state([&] { return CausalTransformer(out.config.model); });
  load_weights(*out.model, (dir / "model.safetensors").string());
  out.has_optimizer = fs::is_regular_file(dir / "optimizer.pt");
  return out;
}

void load_optimizer_state(const std::string& dir, torch::optim::Optimizer& optimizer) {
  const fs::path path = fs::path(dir) / "optimizer.pt";
  if (!fs::is_regular_file(path)) throw IoError(path.string() + ": no optimizer state in this checkpoint");
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path.string());
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    throw FormatError(path.string() + ": cannot restore the optimizer state: " + e.what_without_backtrace());
  }
}

}  // namespace metalm
