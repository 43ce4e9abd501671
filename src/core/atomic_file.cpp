#include "metalm/core/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>

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

// Creates the missing directories above `path`, outermost first, and returns
// them in that order, so that remove_created() can take them back.
std::vector<std::string> create_parents(const std::string& path) {
  std::vector<std::string> missing;  // innermost first
  for (fs::path p = parent_of(path); !p.empty(); p = p.parent_path()) {
    struct stat st {};
    if (::stat(p.c_str(), &st) == 0 || errno != ENOENT) break;
    missing.push_back(p.string());
    if (p.parent_path() == p) break;
  }
  std::vector<std::string> created;
  for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
    if (::mkdir(it->c_str(), 0755) == 0) {
      created.push_back(*it);
    } else if (errno != EEXIST) {
      const int err = errno;
      for (auto d = created.rbegin(); d != created.rend(); ++d) ::rmdir(d->c_str());
      cannot_write(path, "cannot create the directory " + *it + ": " + errno_text(err));
    }
  }
  return created;
}

// rmdir, innermost first: a directory something else was written into since
// is not empty and stays.
void remove_created(std::vector<std::string>& dirs) {
  for (auto d = dirs.rbegin(); d != dirs.rend(); ++d) ::rmdir(d->c_str());
  dirs.clear();
}

// A new file for writing at `tmp`, never through a symbolic link. A file of
// that name left by a dead process with this PID (or a link planted there)
// is unlinked, which removes the entry and never touches what it points to.
int open_new_file(const std::string& tmp) {
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::open(tmp.c_str(), flags, 0644);
  if (fd < 0 && errno == EEXIST && ::unlink(tmp.c_str()) == 0) fd = ::open(tmp.c_str(), flags, 0644);
  return fd;
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

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile file(path);
  file.write(bytes.data(), bytes.size());
  file.commit();
}

// ---- AtomicFile -------------------------------------------------------------

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)), tmp_(temp_name(path_)) {
  fd_ = open_new_file(tmp_);
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
  if (rc != 0) fail(errno_text(errno));
  // rename replaces the entry at path_ (a symbolic link there included),
  // never what a link points to.
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) fail("rename from " + tmp_ + ": " + errno_text(errno));
  sync_or_throw(parent_of(path_), path_);
}

// ---- AtomicDir ---------------------------------------------------------------

AtomicDir::AtomicDir(std::string path) : path_(without_trailing_slash(path)), tmp_(temp_name(path_)) {
  created_dirs_ = create_parents(path_);
  std::error_code ec;
  fs::remove_all(tmp_, ec);  // a link there is removed, not followed
  if (::mkdir(tmp_.c_str(), 0755) != 0) {
    const int err = errno;
    remove_created(created_dirs_);
    cannot_write(path_, "cannot create " + tmp_ + ": " + errno_text(err));
  }
}

AtomicDir::~AtomicDir() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(tmp_, ec);
  remove_created(created_dirs_);
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
    remove_created(created_dirs_);
    committed_ = true;  // nothing left to clean up
    throw;
  }
  committed_ = true;
}

// ---- output options ------------------------------------------------------------

namespace {

struct FileId {
  dev_t dev;
  ino_t ino;
  bool operator==(const FileId& o) const { return dev == o.dev && ino == o.ino; }
};

std::optional<FileId> id_of(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return FileId{st.st_dev, st.st_ino};
}

// `path` made absolute with the links of its existing part resolved; empty
// when that fails.
fs::path resolved(const std::string& path) {
  std::error_code ec;
  const fs::path p = fs::absolute(without_trailing_slash(path), ec);
  if (ec) return {};
  fs::path r = fs::weakly_canonical(p, ec);
  return ec ? p.lexically_normal() : r;
}

bool same_name(const std::string& a, const std::string& b) {
  const fs::path x = resolved(a), y = resolved(b);
  return !x.empty() && x == y;
}

// The identity of `path` and of every directory above it, itself first,
// after resolving the symbolic links of the part that exists (a link's
// lexical parent is not its target's); parts that do not exist are skipped.
std::vector<FileId> ids_up_from(const std::string& path) {
  fs::path p = resolved(path);
  if (p.empty()) return {};
  std::vector<FileId> ids;
  for (;;) {
    if (const auto id = id_of(p)) ids.push_back(*id);
    if (!p.has_parent_path() || p.parent_path() == p) break;
    p = p.parent_path();
  }
  return ids;
}

bool holds(const std::vector<FileId>& ids, const FileId& id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

void check_apart(const std::string& path, const std::string& option, const std::vector<CommandInput>& inputs) {
  const auto out = id_of(path);
  const auto out_and_above = ids_up_from(path);
  for (const CommandInput& in : inputs) {
    if (in.path.empty()) continue;
    const std::string both = option + " " + path + " and " + in.option + " " + in.path;
    const char* rule = "; metalm never writes over what it reads, --force or not: choose another ";
    const auto input = id_of(in.path);
    if (!input) {
      // Not there (yet): another output of the command, or a missing input
      // whose reader will say so. Only the same name can collide.
      if (same_name(path, in.path)) throw ConfigError(both + " are the same path" + rule + option);
      continue;
    }
    if (out && *out == *input)
      throw ConfigError(both + " are the same " + (fs::is_directory(path) ? "directory" : "file") + rule + option);
    if (out && holds(ids_up_from(in.path), *out))
      throw ConfigError(both + " overlap: " + in.option + " is inside " + option +
                        ", which would be replaced with everything in it" + rule + option);
    if (in.tree && holds(out_and_above, *input))
      throw ConfigError(both + " overlap: " + option + " is inside " + in.option + ", which is read as a whole" +
                        rule + option);
  }
}

}  // namespace

void check_output_path(const std::string& path, OutputKind kind, bool force, const std::string& option,
                       const std::vector<CommandInput>& inputs) {
  check_apart(path, option, inputs);
  std::error_code ec;
  // Not following a link: what is replaced is the entry at the path.
  const fs::file_status st = fs::symlink_status(without_trailing_slash(path), ec);
  if (!fs::exists(st)) return;
  const std::string named = option + " " + path;
  if (fs::is_symlink(st))
    throw ConfigError(named + " is a symbolic link; metalm does not write through one and --force does not "
                              "replace one: remove it or choose another path");
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
