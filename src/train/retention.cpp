#include "metalm/train/retention.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <limits>
#include <string_view>

#include "metalm/core/error.hpp"
#include "metalm/train/checkpoint.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

constexpr std::string_view kPrefix = "step_";

bool all_digits(std::string_view s) { return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos; }

// step_<digits>.tmp-<digits> or step_<digits>.old-<digits>: a temporary of
// save_checkpoint (core/atomic_file.hpp).
bool is_leftover_name(std::string_view name) {
  if (name.substr(0, kPrefix.size()) != kPrefix) return false;
  const auto dot = name.find('.');
  if (dot == std::string_view::npos || !all_digits(name.substr(kPrefix.size(), dot - kPrefix.size()))) return false;
  const std::string_view tail = name.substr(dot);
  return (tail.substr(0, 5) == ".tmp-" || tail.substr(0, 5) == ".old-") && all_digits(tail.substr(5));
}

}  // namespace

int64_t checkpoint_step(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  const std::string name = p.filename().string();
  if (name.size() <= kPrefix.size() || name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
  const std::string_view digits(name.data() + kPrefix.size(), name.size() - kPrefix.size());
  if (!all_digits(digits)) return -1;
  int64_t step = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), step);
  if (ec != std::errc() || end != digits.data() + digits.size())
    throw FormatError(dir + ": the step in this checkpoint folder's name is out of range (at most " +
                      std::to_string(std::numeric_limits<int64_t>::max()) + "); metalm names checkpoint folders step_N after the step in " +
                      "their state.json: rename or remove it");
  return step;
}

std::vector<std::string> prune_checkpoints(const std::string& run_dir, const RetentionPolicy& policy) {
  std::vector<std::string> all;  // oldest first, up to the newest counted
  for (auto& dir : list_checkpoints(run_dir))
    if (policy.newest < 0 || checkpoint_step(dir) <= policy.newest) all.push_back(std::move(dir));
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
    const bool step_dir = checkpoint_step(path) >= 0 && entry.is_directory();
    if (!is_leftover_name(name) && !step_dir) continue;
    if (std::find(complete.begin(), complete.end(), path) != complete.end()) continue;
    removed.push_back(path);
  }
  for (const auto& path : removed) fs::remove_all(path, ec);
  return removed;
}

}  // namespace metalm
