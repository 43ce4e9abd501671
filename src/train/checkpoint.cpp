#include "metalm/train/checkpoint.hpp"

#include <spdlog/spdlog.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/archive.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/io/safetensors.hpp"
#include "metalm/model/weights.hpp"
#include "metalm/train/optimizer.hpp"
#include "metalm/train/retention.hpp"
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
  // value() with a typed default throws json type_error when the key holds
  // another type, so keys read that way are type-checked here first.
  if (!j.is_object() || j.value("format", nlohmann::json()) != kFormat)
    throw FormatError(path + ": not a metalm checkpoint state (expected \"format\": \"" + kFormat + "\")");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != kVersion)
    throw FormatError(path + ": unsupported checkpoint version (expected " + std::to_string(kVersion) + ")");
  if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() < 0)
    throw FormatError(path + ": \"step\" must be a non-negative integer");
  CheckpointState s;
  s.step = j["step"].get<int64_t>();
  if (j.contains("tokenizer") && !j["tokenizer"].is_string())
    throw FormatError(path + ": \"tokenizer\" must be a string");
  if (j.contains("tokenizer")) s.tokenizer = j["tokenizer"].get<std::string>();
  const auto best = j.value("best_val_loss", nlohmann::json());
  if (!best.is_null() && !(best.is_number() && best.get<double>() >= 0))
    throw FormatError(path + ": \"best_val_loss\" must be null or a non-negative number (a loss in nats)");
  s.best_val_loss = best.is_number() ? best.get<double>() : std::numeric_limits<double>::infinity();
  s.rng = j.value("rng", nlohmann::json());
  s.sampler = j.value("sampler", nlohmann::json());
  s.extra = j.value("extra", nlohmann::json::object());
  if (!s.rng.is_null() && !s.rng.is_object()) throw FormatError(path + ": \"rng\" must be an object");
  if (!s.sampler.is_null() && !s.sampler.is_object()) throw FormatError(path + ": \"sampler\" must be an object");
  if (j.contains("has_optimizer") && !j["has_optimizer"].is_boolean())
    throw FormatError(path + ": \"has_optimizer\" must be true or false");
  // The trainer resumes its counters from "extra".
  if (!s.extra.is_object()) throw FormatError(path + ": \"extra\" must be an object");
  if (s.extra.contains("best_step") && !s.extra["best_step"].is_number_integer())
    throw FormatError(path + ": \"extra\".\"best_step\" must be an integer");
  if (s.extra.contains("elapsed_s") && !s.extra["elapsed_s"].is_number())
    throw FormatError(path + ": \"extra\".\"elapsed_s\" must be a number");
  return s;
}

// The fields of a state.json agree with each other and with the
// checkpoint's config.json: a state edited or corrupted into another data
// position, step or best checkpoint is refused rather than resumed from.
void check_consistent(const CheckpointState& s, const RunConfig& config, const std::string& path) {
  const auto corrupt = [&](const std::string& what) {
    throw FormatError(path + ": " + what + "; the checkpoint's state does not hold together (corrupt or edited): " +
                      "use another checkpoint");
  };
  const auto str = [](auto v) { return std::to_string(v); };
  const nlohmann::json& extra = s.extra;
  const int64_t best_step = extra.value("best_step", int64_t{-1});
  if (best_step < -1 || best_step > s.step)
    corrupt("\"extra\".\"best_step\" is " + str(best_step) + ", outside -1 to the checkpoint's step " + str(s.step));
  if (!std::isfinite(s.best_val_loss) && best_step != -1)
    corrupt("\"extra\".\"best_step\" is " + str(best_step) + " but \"best_val_loss\" is null (no evaluation yet)");
  if (extra.contains("elapsed_s") && !(extra["elapsed_s"].get<double>() >= 0 &&
                                       std::isfinite(extra["elapsed_s"].get<double>())))
    corrupt("\"extra\".\"elapsed_s\" must be a finite number of seconds, at least 0");
  int64_t world = 1;
  if (extra.contains("world_size")) {
    if (!extra["world_size"].is_number_integer() || extra["world_size"].get<int64_t>() < 1 ||
        extra["world_size"].get<int64_t>() > (int64_t{1} << 20))
      corrupt("\"extra\".\"world_size\" must be an integer from 1 to 2^20");
    world = extra["world_size"].get<int64_t>();
  }
  if (s.sampler.is_null()) return;  // an imported model: no data stream to resume
  const TrainConfig& tc = config.train;
  const nlohmann::json& sampler = s.sampler;
  if (sampler.value("kind", nlohmann::json()) != "random_window")
    corrupt("\"sampler\".\"kind\" must be \"random_window\"");
  for (const char* key : {"step", "batch", "seq_len"})
    if (!sampler.contains(key) || !sampler[key].is_number_integer()) corrupt("\"sampler\".\"" + std::string(key) + "\" must be an integer");
  if (!sampler.contains("seed") || !sampler["seed"].is_number_unsigned() ||
      sampler["seed"].get<uint64_t>() != static_cast<uint64_t>(tc.seed))
    corrupt("\"sampler\".\"seed\" must be config.json's train.seed, " + str(tc.seed));
  if (sampler["seq_len"].get<int64_t>() != tc.seq_len)
    corrupt("\"sampler\".\"seq_len\" is " + str(sampler["seq_len"].get<int64_t>()) + " but config.json's train.seq_len is " +
            str(tc.seq_len));
  const __int128 global_batch = static_cast<__int128>(tc.batch_size) * world;
  if (sampler["batch"].get<int64_t>() != global_batch)
    corrupt("\"sampler\".\"batch\" is " + str(sampler["batch"].get<int64_t>()) + " but config.json's train.batch_size " +
            str(tc.batch_size) + " x \"extra\".\"world_size\" " + str(world) + " is " +
            str(static_cast<int64_t>(global_batch)));
  // Every update draws grad_accum micro-batches, so the sampler's counter
  // follows from the step (from sampler_origin on, if grad_accum changed).
  // extra.sampler_origin: the step and micro-batches drawn since which every
  // update drew train.grad_accum (absent: the start of the run).
  const nlohmann::json origin = extra.value("sampler_origin", nlohmann::json::object({{"step", 0}, {"sampler_step", 0}}));
  if (!origin.is_object() || !origin.contains("step") || !origin["step"].is_number_integer() ||
      !origin.contains("sampler_step") || !origin["sampler_step"].is_number_integer())
    corrupt("\"extra\".\"sampler_origin\" must be {\"step\": integer, \"sampler_step\": integer}");
  const int64_t origin_step = origin["step"].get<int64_t>(), origin_drawn = origin["sampler_step"].get<int64_t>();
  if (origin_step < 0 || origin_step > s.step || origin_drawn < origin_step)
    corrupt("\"extra\".\"sampler_origin\" (step " + str(origin_step) + ", " + str(origin_drawn) +
            " micro-batches) does not fit the checkpoint's step " + str(s.step));
  const __int128 drawn = origin_drawn + static_cast<__int128>(s.step - origin_step) * tc.grad_accum;
  const int64_t sampler_step = sampler["step"].get<int64_t>();
  if (sampler_step != drawn)
    corrupt("\"sampler\".\"step\" is " + str(sampler_step) + " but " + str(s.step - origin_step) + " updates of " +
            str(tc.grad_accum) + " micro-batches (train.grad_accum in config.json) after " + str(origin_drawn) +
            " drawn at step " + str(origin_step) + " make " +
            (drawn > std::numeric_limits<int64_t>::max() ? std::string("more than 2^63") : str(static_cast<int64_t>(drawn))));
  if (extra.contains("tokens")) {
    const __int128 tokens = static_cast<__int128>(s.step) * tc.batch_size * tc.seq_len * tc.grad_accum * world;
    if (!extra["tokens"].is_number_integer() || extra["tokens"].get<int64_t>() != tokens)
      corrupt("\"extra\".\"tokens\" must be step x train.batch_size x train.seq_len x train.grad_accum x "
              "world_size");
  }
}

bool is_complete_checkpoint(const fs::path& dir) {
  return fs::is_regular_file(dir / "state.json") && fs::is_regular_file(dir / "model.safetensors") &&
         fs::is_regular_file(dir / "config.json");
}

// A checkpoint is what its state.json says; a folder named for another step
// (a copy, a rename) would be taken for the wrong point of the run.
void check_name_matches_step(const fs::path& dir, int64_t step) {
  const int64_t named = checkpoint_step(dir.string());
  if (named >= 0 && named != step)
    throw FormatError(dir.string() + ": the folder is named for step " + std::to_string(named) +
                      " but its state.json holds step " + std::to_string(step) + "; a checkpoint folder must be " +
                      "named after its step (" + fs::path(checkpoint_dir("", step)).filename().string() +
                      "): rename it, or move it out of checkpoints/");
}

// Reads back a checkpoint just written under `dir` (its temporary name):
// state.json, config.json, every tensor of model.safetensors against the
// model's parameters, and the optimizer archive. Throws FormatError/IoError.
void verify_written(const fs::path& dir, int64_t step, CausalTransformer& model, bool has_optimizer) {
  const std::string state_path = (dir / "state.json").string();
  if (state_from_json(read_json_file(state_path, JsonError::Format), state_path).step != step)
    throw FormatError(state_path + ": reads back a different step than was written");
  const std::string config_path = (dir / "config.json").string();
  run_config_from_json(read_json_file(config_path), config_path);
  const std::string weights_path = (dir / "model.safetensors").string();
  const SafeTensorsFile weights = read_safetensors(weights_path);
  const auto params = model->named_parameters(/*recurse=*/true);
  if (weights.tensors.size() != params.size())
    throw FormatError(weights_path + ": reads back " + std::to_string(weights.tensors.size()) + " tensors, " +
                      std::to_string(params.size()) + " were written");
  for (const auto& p : params) {
    const auto it = weights.tensors.find(p.key());
    if (it == weights.tensors.end() || it->second.sizes() != p.value().sizes())
      throw FormatError(weights_path + ": tensor '" + p.key() + "' does not read back as written");
  }
  if (has_optimizer) {
    torch::serialize::InputArchive archive;
    archive.load_from((dir / "optimizer.pt").string());
  }
}

}  // namespace

std::string checkpoint_dir(const std::string& run_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return (fs::path(run_dir) / "checkpoints" / name).string();
}

void save_checkpoint(const std::string& dir, const RunConfig& config, CausalTransformer& model,
                     const torch::optim::Optimizer* optimizer, const CheckpointState& state) {
  // Everything goes into DIR.tmp-PID, is read back, then the directory is
  // renamed into place (core/atomic_file.hpp): a crash, a full disk or a
  // power loss leaves either no DIR or a complete one.
  AtomicDir out(dir);
  try {
    write_json_file(out / "config.json", to_json(config));
    save_weights(*model, out / "model.safetensors", {{"format", "metalm"}, {"step", std::to_string(state.step)}});
    if (optimizer != nullptr) save_optimizer_state(out / "optimizer.pt", *optimizer);
    // state.json last: a directory without it is never taken for a checkpoint.
    write_json_file(out / "state.json", state_to_json(state, optimizer != nullptr));
    verify_written(out.temp_path(), state.step, model, optimizer != nullptr);
    out.commit();
  } catch (const c10::Error& e) {
    throw IoError("cannot write checkpoint " + dir + ": " + e.what_without_backtrace());
  } catch (const Error& e) {
    throw IoError("cannot write checkpoint " + dir + ": " + e.what());
  } catch (const std::exception& e) {  // std::bad_alloc, std::filesystem_error, ...
    throw IoError("cannot write checkpoint " + dir + ": " + e.what());
  }
}

std::vector<std::string> list_checkpoints(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::vector<std::pair<int64_t, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    // Leftovers of interrupted writes (step_X.tmp-PID, step_X.old-PID) and
    // directories without state.json are not checkpoints.
    const int64_t step = checkpoint_step(entry.path().string());  // throws on an out-of-range name
    if (step < 0 || !entry.is_directory() || !is_complete_checkpoint(entry.path())) continue;
    found.emplace_back(step, entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& f : found) out.push_back(std::move(f.second));
  return out;
}

std::vector<std::string> checkpoints_to_continue(const std::string& run_dir, bool resume) {
  std::vector<std::string> existing = list_checkpoints(run_dir);
  if (!resume && !existing.empty())
    throw ConfigError("run directory " + run_dir + " already has checkpoints (newest: " +
                      fs::path(existing.back()).filename().string() +
                      "); pass --resume to continue it, or choose another --run-dir");
  if (resume && existing.empty())
    throw ConfigError("nothing to resume: no complete checkpoint in " + run_dir + "/checkpoints");
  return existing;
}

std::string checkpoint_to_load(const std::string& dir_or_run_dir) {
  const fs::path dir(dir_or_run_dir);
  if (!fs::exists(dir)) throw IoError("checkpoint not found: " + dir_or_run_dir);
  if (fs::is_regular_file(dir / "state.json")) return dir.string();
  const auto all = list_checkpoints(dir_or_run_dir);
  if (all.empty())
    throw IoError("no checkpoint in " + dir_or_run_dir +
                  " (expected DIR/state.json or a run directory with checkpoints/step_N/state.json)");
  return all.back();
}

LoadedCheckpoint load_checkpoint(const std::string& dir_or_run_dir, const LoadWeightsOptions& weights) {
  const fs::path dir = checkpoint_to_load(dir_or_run_dir);
  if (!is_complete_checkpoint(dir)) {
    // A file of the checkpoint that is there but is no regular file (a FIFO,
    // a link to a device) is named as what it is, not as a missing file.
    for (const char* name : {"config.json", "model.safetensors", "state.json"}) {
      std::error_code ec;
      if (fs::exists(dir / name, ec) && !fs::is_regular_file(dir / name, ec)) InputFile((dir / name).string());
    }
    throw FormatError(dir.string() + ": incomplete checkpoint (needs config.json, model.safetensors, state.json)");
  }

  LoadedCheckpoint out;
  out.path = dir.string();
  const std::string config_path = (dir / "config.json").string();
  out.config = run_config_from_json(read_json_file(config_path), config_path);
  resolve(out.config);
  const std::string state_path = (dir / "state.json").string();
  const nlohmann::json state_json = read_json_file(state_path, JsonError::Format);
  out.state = state_from_json(state_json, state_path);
  check_name_matches_step(dir, out.state.step);
  check_consistent(out.state, out.config, state_path);
  // Building the model draws its (discarded) initial weights from the global
  // generator; the caller's random stream is left as it was.
  out.model = preserving_rng_state([&] { return CausalTransformer(out.config.model); });
  load_weights(*out.model, (dir / "model.safetensors").string(), weights);
  out.has_optimizer = fs::is_regular_file(dir / "optimizer.pt");
  if (state_json.value("has_optimizer", false) && !out.has_optimizer)
    throw FormatError(dir.string() + "/optimizer.pt: missing (state.json says the checkpoint has optimizer state)");
  return out;
}

LoadedCheckpoint load_resume_checkpoint(const std::string& run_dir) {
  const auto all = list_checkpoints(run_dir);
  if (all.empty()) throw ConfigError("nothing to resume: no complete checkpoint in " + run_dir + "/checkpoints");
  std::vector<std::string> invalid;  // newest first, "DIR (reason)"
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      LoadedCheckpoint ckpt = load_checkpoint(*it);
      if (!ckpt.has_optimizer) throw FormatError(*it + ": no optimizer state, cannot resume training");
      // The optimizer archive must restore into the checkpoint's own model,
      // and the generator state must be one restore_rng_state accepts.
      auto optimizer = make_optimizer(ckpt.model, ckpt.config.train);
      load_optimizer_state(*it, *optimizer);
      preserving_rng_state([&] {
        restore_rng_state(ckpt.state.rng);
        return 0;
      });
      for (const auto& bad : invalid) spdlog::warn("checkpoint {} is not valid; resuming from {} instead", bad, *it);
      return ckpt;
    } catch (const Error& e) {
      invalid.push_back(*it + " (" + e.what() + ")");
    } catch (const c10::Error& e) {
      invalid.push_back(*it + " (" + e.what_without_backtrace() + ")");
    }
  }
  throw FormatError("no valid checkpoint to resume in " + run_dir + "/checkpoints; the newest: " + invalid.front());
}

void save_optimizer_state(const std::string& path, const torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  AtomicFile file(path);
  // torch's zip writer must never see a failed write: it throws, and its
  // destructor then finishes the archive, fails again and throws out of a
  // destructor, which aborts the process (a full disk gave SIGABRT). So the
  // first error is kept, the rest of the archive is discarded, and the error
  // is rethrown once torch is done.
  std::exception_ptr failed;
  archive.save_to([&](const void* data, size_t n) -> size_t {
    if (!failed) {
      try {
        file.write(data, n);
      } catch (...) {
        failed = std::current_exception();
      }
    }
    return n;
  });
  if (failed) std::rethrow_exception(failed);
  file.commit();
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
