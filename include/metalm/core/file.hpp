// Opening the files metalm reads. Every reader (whole-file reads, the token
// file's map, safetensors) goes through here, so a missing path, a directory,
// a FIFO (whose open would block until a writer comes) or a device is refused
// in one place with one wording: "cannot read PATH: why". The one exception:
// the small text inputs a user may produce on the fly (`--config <(jq ...)`,
// `--ids /dev/stdin`) may be a pipe or a character device (see InputKind).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace metalm {

// A regular file open for reading.
class InputFile {
 public:
  // Throws IoError("cannot read PATH: ...") when the path is missing or
  // unreadable, or is not a regular file. Never blocks (a FIFO is opened
  // non-blocking, then refused).
  explicit InputFile(const std::string& path);
  ~InputFile();
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  // The size when the file was opened.
  uint64_t size() const { return size_; }
  // The size now (fstat); differs from size() if the file changed since.
  uint64_t current_size() const;
  // Reads exactly `n` bytes at `offset`; IoError naming the file when it ends
  // first (it shrank since it was opened) or the read fails.
  void read_at(uint64_t offset, void* out, std::size_t n) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

// What a whole-file read is for. Each kind caps the bytes read into memory
// (a 4 GB file given as a config fails at once, by its size, instead of being
// read whole), and says whether a stream may be read: configs and text inputs
// may be a pipe or a character device, read until its end or the cap; every
// other input must be a regular file.
enum class InputKind {
  Config,  // experiment configs (JSON): 16 MiB; pipes allowed
  Text,    // --text, --ids, tokenize --input: 256 MiB; pipes allowed
  Json,    // data JSON through read_json_file (state.json, HF config and index): 256 MiB
  Data,    // anything else read whole (corpus files, logs): 4 GiB
};

// The cap of `kind`, in bytes.
uint64_t max_input_bytes(InputKind kind);

// The bytes of the file at `path`: a regular file (an InputFile, so the same
// errors), or for Config and Text also a pipe or a character device. IoError
// "cannot read PATH: ..." naming the size and the cap when it holds more than
// max_input_bytes(kind).
std::string read_file(const std::string& path, InputKind kind = InputKind::Data);

// At most `max_chars` characters of `text` for an error message, with "..."
// and the full length when cut, so a hostile value never floods stderr.
std::string excerpt(const std::string& text, std::size_t max_chars = 80);

// Turns SIGBUS, which the kernel raises when a memory-mapped input shrinks
// under a running process (a token file truncated or rewritten mid-run), into
// the one-line "metalm: error: ..." and exit code 1, instead of a silent core
// dump. Installed once by the CLI; async-signal-safe.
void install_mapped_file_fault_handler();

}  // namespace metalm
