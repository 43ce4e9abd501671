// Which checkpoints of a run directory are kept: the keep_last newest, the
// best (by validation loss) and the save_steps ones; the others are removed
// after each new checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace metalm {

// The step of a checkpoint directory named step_<N>; -1 when the name is not one.
int64_t checkpoint_step(const std::string& dir);

struct RetentionPolicy {
  int64_t keep_last = 2;          // newest checkpoints kept (at least 1)
  std::vector<int64_t> keep_steps;  // kept for good (train.save_steps)
  int64_t best_step = -1;         // kept while it is the best; -1: none
};

// Removes the complete checkpoints the policy does not keep; returns their paths.
std::vector<std::string> prune_checkpoints(const std::string& run_dir, const RetentionPolicy& policy);

// Removes leftovers of interrupted writes (checkpoints/step_*.tmp-*,
// step_*.old-*) and step directories without state.json; returns their paths.
std::vector<std::string> remove_incomplete_checkpoints(const std::string& run_dir);

}  // namespace metalm
