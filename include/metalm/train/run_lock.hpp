// One process per run directory, and only in a run directory. Two trainers
// writing the same run directory would interleave config.json,
// metrics.jsonl, checkpoints and best.json of two different runs; RunDirLock
// makes the second one fail at once instead. And a directory that holds
// someone else's files is never written into.
//
// The lock is flock(2) on RUN_DIR/.lock, held for the object's lifetime; the
// file holds the holder's PID so the refusal can name it. The kernel drops a
// flock when its holder exits, however it exits, so a .lock left behind by a
// killed process never blocks the next run.
//
// A run directory is marked as one when it is created: RUN_DIR/metalm-run.json,
// {"format": "metalm-run", "version": 1}.
#pragma once

#include <string>

namespace metalm {

// The marker's file name inside a run directory.
inline constexpr const char* kRunMarker = "metalm-run.json";

// Why `run_dir` cannot be used as a run directory, or "" when it can: it does
// not exist, is empty (or holds only the .lock of a run killed at once), holds
// the marker, or is a run written before the marker existed (a config.json
// with "model", "train" and "data" sections and a metrics.jsonl, as metalm
// writes them). FormatError for a marker that is not metalm's.
std::string run_dir_refusal(const std::string& run_dir);

class RunDirLock {
 public:
  // Checks run_dir (run_dir_refusal: ConfigError naming it), creates it if
  // needed, takes the lock and writes the marker if it is missing. Throws
  // IoError ("run directory D is in use by process PID ...") when another
  // process holds the lock, or when the lock file cannot be created or is not
  // a regular file of its own (a symbolic link, a FIFO, a file with other hard
  // links: never followed, truncated or written).
  explicit RunDirLock(const std::string& run_dir);
  // Releases the lock. A run directory this object created and that still
  // holds nothing but .lock and the marker (a run that failed before writing
  // anything) is removed again.
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
