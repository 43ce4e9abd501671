#include "metalm/core/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "metalm/core/error.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

[[noreturn]] void cannot_write(const std::string& path, const std::string& reason) {
  throw IoError("cannot write " + path + ": " + reason);
}

std::string errno_text(int err) { return std::strerror(err); }

std::string temp_name(const std::string& path) { return path + ".tmp-" + std::to_string(::getpid()); }

// The directory a path's entry lives in ("." for a bare name).
std::string parent_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// "runs/x/" and "runs/x" name the same directory; the temporary must be its
// sibling, not its child.
std::string without_trailing_slash(const std::string& path) {
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

// Syncs `path`, naming `target` (what the caller is writing) in the error.
void sync_or_throw(const std::string& path, const std::string& target) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) cannot_write(target, "cannot open " + path + " to sync it: " + errno_text(errno));
  // EINVAL: the file system cannot sync this kind of file; nothing to wait for.
  if (::fsync(fd) != 0 && errno != EINVAL) {
    const int err = errno;
    ::close(fd);
    cannot_write(target, "fsync of " + path + ": " + errno_text(err));
  }
  ::close(fd);
}

}  // namespace

void sync_path(const std::string& path) { sync_or_throw(path, path); }

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

// ---- AtomicFile -------------------------------------------------------------

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(temp_name(path_)) {
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) cannot_write(path_, errno_text(errno));
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFile::fail(const std::string& reason) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  ::unlink(tmp_.c_str());
  cannot_write(path_, reason);
}

void AtomicFile::write(const void* data, std::size_t n) {
  if (fd_ < 0) cannot_write(path_, "already committed");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(errno_text(errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void AtomicFile::write_at(uint64_t offset, const void* data, std::size_t n) {
  if (fd_ < 0) cannot_write(path_, "already committed");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      fail(errno_text(errno));
    }
    p += w;
    n -= static_cast<std::size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) cannot_write(path_, "already committed");
  // Data first, then the name: after a power loss the target holds either
  // the old bytes or all the new ones, never an empty file.
  if (::fsync(fd_) != 0 && errno != EINVAL) fail("fsync: " + errno_text(errno));
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    cannot_write(path_, errno_text(err));
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_.c_str());
    cannot_write(path_, "rename from " + tmp_ + ": " + errno_text(err));
  }
  sync_or_throw(parent_of(path_), path_);
}

// ---- AtomicDir ---------------------------------------------------------------

AtomicDir::AtomicDir(std::string path) : path_(without_trailing_slash(path)), tmp_(temp_name(path_)) {
  std::error_code ec;
  fs::create_directories(parent_of(path_), ec);
  if (ec) cannot_write(path_, ec.message());
  fs::remove_all(tmp_, ec);
  if (!fs::create_directory(tmp_, ec) || ec) cannot_write(path_, ec ? ec.message() : "cannot create " + tmp_);
}

AtomicDir::~AtomicDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
}

std::string AtomicDir::operator/(const std::string& name) const { return (fs::path(tmp_) / name).string(); }

void AtomicDir::commit() {
  if (committed_) cannot_write(path_, "already committed");
  try {
    std::error_code ec;
    for (auto it = fs::recursive_directory_iterator(tmp_, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_regular_file() || it->is_directory()) sync_or_throw(it->path().string(), path_);
    if (ec) cannot_write(path_, ec.message());
    sync_or_throw(tmp_, path_);

    const fs::file_status target = fs::symlink_status(path_, ec);
    if (fs::exists(target) && !fs::is_directory(target))
      cannot_write(path_, "something that is not a directory is in the way");
    if (!fs::exists(target)) {
      if (::rename(tmp_.c_str(), path_.c_str()) != 0) cannot_write(path_, "rename from " + tmp_ + ": " + errno_text(errno));
      sync_or_throw(parent_of(path_), path_);
    } else if (::renameat2(AT_FDCWD, tmp_.c_str(), AT_FDCWD, path_.c_str(), RENAME_EXCHANGE) == 0) {
      // One atomic swap: the target is the new directory, tmp_ the old one.
      sync_or_throw(parent_of(path_), path_);
      fs::remove_all(tmp_, ec);
    } else {
      // No atomic swap on this file system: move the old one aside first, so
      // a crash in between leaves the complete old or new one under a name
      // a reader can recognise (PATH.old-PID, PATH.tmp-PID).
      const std::string old = path_ + ".old-" + std::to_string(::getpid());
      fs::remove_all(old, ec);
      if (::rename(path_.c_str(), old.c_str()) != 0)
        cannot_write(path_, "cannot move the old one aside to " + old + ": " + errno_text(errno));
      if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
        const int err = errno;
        ::rename(old.c_str(), path_.c_str());
        cannot_write(path_, "rename from " + tmp_ + ": " + errno_text(err));
      }
      sync_or_throw(parent_of(path_), path_);
      fs::remove_all(old, ec);
    }
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp_, ec);
    committed_ = true;  // nothing left to clean up
    throw;
  }
  committed_ = true;
}

// ---- output options ------------------------------------------------------------

void check_output_path(const std::string& path, OutputKind kind, bool force, const std::string& option) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) return;
  const std::string named = option + " " + path;
  const bool is_dir = fs::is_directory(st);
  if (kind == OutputKind::Directory) {
    if (!is_dir)
      throw ConfigError(named + " exists and is not a directory; remove it or choose another path "
                                "(--force never replaces a file with a directory)");
    if (fs::is_empty(path, ec) && !ec) return;
    if (!force)
      throw ConfigError(named + " is a directory that is not empty; choose another path, or pass --force "
                                "to replace it and everything in it");
    return;
  }
  if (!fs::is_regular_file(st))
    throw ConfigError(named + (is_dir ? " is a directory" : " exists and is not a regular file") +
                      "; remove it or choose another path (--force only replaces a regular file)");
  if (!force) throw ConfigError(named + " already exists; choose another path, or pass --force to replace it");
}

}  // namespace metalm
