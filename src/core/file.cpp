#include "metalm/core/file.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "metalm/core/error.hpp"

namespace metalm {
namespace {

[[noreturn]] void cannot_read(const std::string& path, const std::string& why) {
  throw IoError("cannot read " + path + ": " + why);
}

// What a path that is not a regular file is, for the message.
const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "a special file";
}

// Opens `path` for reading without blocking (O_NONBLOCK: opening a FIFO would
// otherwise wait for a writer), then makes reads blocking again. Refuses what
// is not a regular file, or with `streams` not a regular file, a FIFO or a
// character device. Returns the descriptor; `st` is its fstat.
int open_input(const std::string& path, bool streams, struct stat& st) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) cannot_read(path, std::strerror(errno));
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    cannot_read(path, std::strerror(err));
  }
  const bool stream = S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode);
  if (!S_ISREG(st.st_mode) && !(streams && stream)) {
    ::close(fd);
    cannot_read(path, std::string(kind_of(st.st_mode)) + ", not a regular file");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

struct InputLimit {
  uint64_t bytes;
  const char* what;
  bool streams;
};

InputLimit input_limit(InputKind kind) {
  constexpr uint64_t MiB = uint64_t{1} << 20;
  switch (kind) {
    case InputKind::Config: return {16 * MiB, "a config", true};
    case InputKind::Text: return {256 * MiB, "a text or id input", true};
    case InputKind::Json: return {256 * MiB, "a JSON data file", false};
    case InputKind::Data: break;
  }
  return {4096 * MiB, "a file read whole", false};
}

std::string size_text(uint64_t bytes) {
  return bytes % (uint64_t{1} << 20) == 0 ? std::to_string(bytes >> 20) + " MiB" : std::to_string(bytes) + " bytes";
}

// "cannot read PATH: <what> more than the 16 MiB a config may hold".
[[noreturn]] void too_large(const std::string& path, const InputLimit& limit, const std::string& what) {
  cannot_read(path, what + " more than the " + size_text(limit.bytes) + " " + limit.what + " may hold");
}

// Reads exactly `n` bytes at `offset` of a regular file that held
// `size_at_open` bytes when it was opened.
void read_exactly(int fd, const std::string& path, uint64_t size_at_open, uint64_t offset, void* out, std::size_t n) {
  auto* p = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      cannot_read(path, std::strerror(errno));
    }
    if (got == 0)
      cannot_read(path, "ends at byte " + std::to_string(offset) + ", shorter than when it was opened (" +
                            std::to_string(size_at_open) + " bytes): changed while metalm was reading it?");
    p += got;
    offset += static_cast<uint64_t>(got);
    n -= static_cast<std::size_t>(got);
  }
}

// Closes the descriptor however the read ends.
struct Fd {
  int fd;
  ~Fd() { ::close(fd); }
};

}  // namespace

InputFile::InputFile(const std::string& path) : path_(path) {
  struct stat st {};
  fd_ = open_input(path, false, st);
  size_ = static_cast<uint64_t>(st.st_size);
}

InputFile::~InputFile() {
  if (fd_ >= 0) ::close(fd_);
}

uint64_t InputFile::current_size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0) cannot_read(path_, std::strerror(errno));
  return static_cast<uint64_t>(st.st_size);
}

void InputFile::read_at(uint64_t offset, void* out, std::size_t n) const {
  read_exactly(fd_, path_, size_, offset, out, n);
}

uint64_t max_input_bytes(InputKind kind) { return input_limit(kind).bytes; }

std::string read_file(const std::string& path, InputKind kind) {
  const InputLimit limit = input_limit(kind);
  struct stat st {};
  const Fd fd{open_input(path, limit.streams, st)};
  if (S_ISREG(st.st_mode)) {
    const auto size = static_cast<uint64_t>(st.st_size);
    if (size > limit.bytes) too_large(path, limit, std::to_string(size) + " bytes,");
    std::string bytes(static_cast<std::size_t>(size), '\0');
    read_exactly(fd.fd, path, size, 0, bytes.data(), bytes.size());
    return bytes;
  }
  // A pipe or a device: read to its end, or until it gives more than the cap.
  std::string bytes;
  char buf[65536];
  while (true) {
    const ssize_t got = ::read(fd.fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) cannot_read(path, std::strerror(errno));
    if (got == 0) return bytes;
    if (bytes.size() + static_cast<uint64_t>(got) > limit.bytes)
      too_large(path, limit, std::string(S_ISFIFO(st.st_mode) ? "a pipe" : "a device") + " that gives");
    bytes.append(buf, static_cast<std::size_t>(got));
  }
}

std::string excerpt(const std::string& text, std::size_t max_chars) {
  std::size_t end = text.size();
  if (end > max_chars) {
    end = max_chars;
    // Never cut a UTF-8 sequence in half.
    while (end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80) --end;
  }
  std::string out;
  for (std::size_t i = 0; i < end; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {  // control characters would break the one-line message
      static const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (end < text.size()) out += "... (" + std::to_string(text.size()) + " bytes)";
  return out;
}

namespace {

void on_sigbus(int) {
  static const char msg[] =
      "metalm: error: bus error reading a memory-mapped input: a token file shrank or was rewritten while "
      "metalm was using it (re-run once it is complete)\n";
  const ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof msg - 1);
  (void)ignored;
  ::_exit(1);
}

}  // namespace

void install_mapped_file_fault_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_sigbus;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGBUS, &sa, nullptr);
}

}  // namespace metalm
