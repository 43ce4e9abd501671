// Which checkpoints of a run directory are kept: the keep_last newest, the
// best (by validation loss) and the save_steps ones; the others are removed
// after each new checkpoint, once that one is complete and read back.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace metalm {

// The step a checkpoint directory's name claims (step_<N>, trailing slashes
// ignored); -1 when the name is not of that form. Throws FormatError naming
// the directory when N does not fit a 64-bit integer. The name is only a
// claim: a checkpoint's step is the one in its state.json, and
// load_checkpoint refuses a folder whose name disagrees with it.
int64_t checkpoint_step(const std::string& dir);

struct RetentionPolicy {
  int64_t keep_last = 2;          // newest checkpoints kept (at least 1)
  std::vector<int64_t> keep_steps;  // kept for good (train.save_steps)
  int64_t best_step = -1;         // kept while it is the best; -1: none
  // The checkpoint just written: checkpoints named for later steps (left by
  // a run that resumed from an earlier one, or copied in by hand) are not
  // counted and not removed. -1: no limit.
  int64_t newest = -1;
};

// Removes the complete checkpoints the policy does not keep; returns their paths.
std::vector<std::string> prune_checkpoints(const std::string& run_dir, const RetentionPolicy& policy);

// Removes what interrupted writes leave in RUN_DIR/checkpoints: the
// temporaries step_N.tmp-PID and step_N.old-PID, and step_N directories
// without state.json, model.safetensors or config.json (never complete, so
// never a checkpoint); returns their paths. Nothing else is touched.
std::vector<std::string> remove_incomplete_checkpoints(const std::string& run_dir);

}  // namespace metalm
