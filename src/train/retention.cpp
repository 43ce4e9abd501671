#include "metalm/train/retention.hpp"

#include <algorithm>
#include <filesystem>
#include <regex>

#include "metalm/train/checkpoint.hpp"

namespace fs = std::filesystem;

namespace metalm {

int64_t checkpoint_step(const std::string& dir) {
  static const std::regex name_re("step_([0-9]+)");
  std::smatch m;
  const std::string name = fs::path(dir).filename().string();
  return std::regex_match(name, m, name_re) ? std::stoll(m[1].str()) : -1;
}

std::vector<std::string> prune_checkpoints(const std::string& run_dir, const RetentionPolicy& policy) {
  const auto all = list_checkpoints(run_dir);  // oldest first
  const auto keep_last = static_cast<std::size_t>(std::max<int64_t>(1, policy.keep_last));
  std::vector<std::string> removed;
  for (std::size_t i = 0; i + keep_last < all.size(); ++i) {
    const int64_t step = checkpoint_step(all[i]);
    const bool kept = step == policy.best_step ||
                      std::find(policy.keep_steps.begin(), policy.keep_steps.end(), step) != policy.keep_steps.end();
    if (kept) continue;
    std::error_code ec;
    fs::remove_all(all[i], ec);
    removed.push_back(all[i]);
  }
  return removed;
}

std::vector<std::string> remove_incomplete_checkpoints(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return {};
  const auto complete = list_checkpoints(run_dir);
  std::vector<std::string> removed;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string path = entry.path().string();
    const std::string name = entry.path().filename().string();
    if (name.rfind("step_", 0) != 0) continue;
    if (std::find(complete.begin(), complete.end(), path) != complete.end()) continue;
    removed.push_back(path);
  }
  for (const auto& path : removed) fs::remove_all(path, ec);
  return removed;
}

}  // namespace metalm
