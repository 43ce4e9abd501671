// One process per run directory. Two trainers writing the same run directory
// would interleave config.json, metrics.jsonl, checkpoints and best.json of
// two different runs; RunDirLock makes the second one fail at once instead.
//
// The lock is flock(2) on RUN_DIR/.lock, held for the object's lifetime; the
// file holds the holder's PID so the refusal can name it. The kernel drops a
// flock when its holder exits, however it exits, so a .lock left behind by a
// killed process never blocks the next run.
#pragma once

#include <string>

namespace metalm {

class RunDirLock {
 public:
  // Creates run_dir if needed and takes the lock; throws IoError
  // ("run directory D is in use by process PID ...") when another process
  // holds it, or when the lock file cannot be created.
  explicit RunDirLock(const std::string& run_dir);
  // Releases the lock. A run directory this object created and that still
  // holds nothing but .lock (a run that failed before writing anything) is
  // removed again.
  ~RunDirLock();
  RunDirLock(const RunDirLock&) = delete;
  RunDirLock& operator=(const RunDirLock&) = delete;

  const std::string& path() const { return path_; }  // RUN_DIR/.lock

 private:
  std::string run_dir_, path_;
  int fd_ = -1;
  bool created_dir_ = false;
};

}  // namespace metalm
