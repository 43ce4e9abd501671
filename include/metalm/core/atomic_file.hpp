// Every file and directory metalm writes goes through here, so that a crash,
// a full disk or a power loss never leaves a partial or empty output under
// its final name.
//
// A file is written to PATH.tmp-PID beside its target, fsync'd, renamed over
// PATH, and then PATH's directory is fsync'd so that the rename itself
// survives a power loss. A directory (a checkpoint, a prepared dataset) is
// filled under PATH.tmp-PID, every file in it and the directory itself are
// fsync'd, it is renamed to PATH, and the parent is fsync'd.
//
// The temporary is created new (O_EXCL) and never through a symbolic link
// (O_NOFOLLOW), and the rename replaces the entry at PATH, never what a link
// there points to: a link planted at either name cannot redirect a write.
//
// Every failure is IoError("cannot write PATH: REASON"), REASON being the
// system's text for the error (e.g. "No space left on device"); the
// temporary is removed and whatever PATH held before is left as it was.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace metalm {

// Writes `bytes` to `path` atomically, replacing an existing file.
void write_file_atomic(const std::string& path, std::string_view bytes);

// A file being written: the bytes go to PATH.tmp-PID until commit() moves
// them into place. Destroyed uncommitted (e.g. by an exception), it removes
// the temporary.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  // Appends at the end of what was written so far.
  void write(const void* data, std::size_t n);
  // Overwrites bytes already written (e.g. a header whose counts are known
  // only at the end); does not move the append position.
  void write_at(uint64_t offset, const void* data, std::size_t n);
  // fsync, rename over the target, fsync the directory.
  void commit();

  const std::string& path() const { return path_; }

 private:
  [[noreturn]] void fail(const std::string& reason);

  std::string path_, tmp_;
  int fd_ = -1;
};

// A directory being written: create files under temp_path(), then commit().
// Destroyed uncommitted, it removes the temporary directory.
class AtomicDir {
 public:
  // Creates PATH.tmp-PID (a leftover of the same name from a dead process
  // with this PID is removed first). Missing parents are created (and
  // removed again if the directory is never committed).
  explicit AtomicDir(std::string path);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::string& temp_path() const { return tmp_; }
  // temp_path()/name
  std::string operator/(const std::string& name) const;

  // fsyncs the files directly inside and the directory, renames it to the
  // target and fsyncs the parent. An existing directory at the target is
  // replaced (swapped atomically where the file system can, otherwise moved
  // to PATH.old-PID first and removed after); anything else at the target is
  // an error.
  void commit();

  const std::string& path() const { return path_; }

 private:
  std::string path_, tmp_;
  bool committed_ = false;
  std::vector<std::string> created_dirs_;  // parents made here, removed again if never committed
};

// What a command's output option names.
enum class OutputKind { File, Directory };

// A path a command reads, named by its option (for the messages of
// check_output_path). `tree`: the command reads the directory as a whole
// (a corpus), so nothing may be written inside it either.
struct CommandInput {
  std::string option, path;
  bool tree = false;
};

// The rule of every output option (--out, --csv, --output, --hf-config):
//  - an output may not overlap an input, --force or not: not the same file or
//    directory, not a directory holding an input (replacing it would delete
//    the input), not inside an input read as a tree. Paths are compared by
//    device and inode, so symbolic links, "..", hard-linked directories and
//    bind mounts do not hide an overlap. A second output of the same command
//    is passed as an input.
//  - a path that does not exist, or an empty directory where a directory is
//    written, is fine. Anything else already there (a symbolic link
//    included) is refused, unless `force` is set and it is of the same kind as
//    the output (a regular file for a file, a directory for a directory):
//    then it is replaced, atomically, once the new output is complete.
//    Something of the other kind is never replaced.
// Every refusal is a one-line ConfigError naming `option` and the path.
void check_output_path(const std::string& path, OutputKind kind, bool force, const std::string& option,
                       const std::vector<CommandInput>& inputs = {});

}  // namespace metalm
