#include "metalm/train/run_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

constexpr const char* kMarkerFormat = "metalm-run";
constexpr int kMarkerVersion = 1;

// The PID written into a lock file, or "unknown" (the holder may be between
// taking the lock and writing its PID).
std::string holder_of(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string pid(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  const bool digits = !pid.empty() && pid.find_first_not_of("0123456789") == std::string::npos;
  return digits ? pid : "unknown";
}

bool is_regular(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(fs::symlink_status(p, ec));
}

// A small regular file, read whole; "" when it is not one.
std::string small_file(const fs::path& p, std::uintmax_t max_bytes) {
  std::error_code ec;
  if (!is_regular(p) || fs::file_size(p, ec) > max_bytes || ec) return {};
  try {
    return read_file(p.string());
  } catch (const Error&) {
    return {};
  }
}

// .lock as RunDirLock leaves it when its run is killed before writing
// anything else: empty, or a PID and a newline.
bool is_lock_file(const fs::path& p) {
  if (!is_regular(p)) return false;
  std::string pid = small_file(p, 32);
  while (!pid.empty() && pid.back() == '\n') pid.pop_back();
  return pid.find_first_not_of("0123456789") == std::string::npos;
}

// A run written before metalm marked its run directories: the config.json
// (a resolved config, with its model, train and data sections) and the
// metrics.jsonl that train writes first.
bool is_unmarked_run(const fs::path& dir) {
  if (!is_regular(dir / "metrics.jsonl")) return false;
  const auto j = nlohmann::json::parse(small_file(dir / "config.json", 1 << 20), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return false;
  for (const char* section : {"model", "train", "data"})
    if (!j.contains(section) || !j[section].is_object()) return false;
  return true;
}

void check_marker(const fs::path& marker) {
  const nlohmann::json j = read_json_file(marker.string(), JsonError::Format);
  if (!j.is_object() || j.value("format", nlohmann::json()) != kMarkerFormat)
    throw FormatError(marker.string() + ": not a metalm run marker (expected \"format\": \"" + kMarkerFormat +
                      "\"); this directory is not a metalm run: choose another --run-dir");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int64_t>() != kMarkerVersion)
    throw FormatError(marker.string() + ": unsupported run marker version (expected " +
                      std::to_string(kMarkerVersion) + ")");
}

std::string lock_error(const std::string& run_dir, const std::string& why) {
  return "cannot lock run directory " + run_dir + ": " + why;
}

}  // namespace

std::string run_dir_refusal(const std::string& run_dir) {
  std::error_code ec;
  const fs::file_status st = fs::status(run_dir, ec);  // a link to a directory is that directory
  if (!fs::exists(st)) return {};
  if (!fs::is_directory(st)) return "run directory " + run_dir + " exists and is not a directory; choose another --run-dir";
  const fs::path dir(run_dir);
  if (fs::exists(fs::symlink_status(dir / kRunMarker, ec))) {
    check_marker(dir / kRunMarker);
    return {};
  }
  bool empty = true;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.path().filename() != ".lock" || !is_lock_file(entry.path())) empty = false;
  if (ec) return "run directory " + run_dir + " cannot be listed: " + ec.message();
  if (empty || is_unmarked_run(dir)) return {};
  return "run directory " + run_dir + " is not empty and is not a metalm run (it has no " + kRunMarker +
         "); metalm writes only into a new or empty directory or a run of its own: choose another --run-dir";
}

RunDirLock::RunDirLock(const std::string& run_dir) : run_dir_(run_dir), path_((fs::path(run_dir) / ".lock").string()) {
  if (const std::string refusal = run_dir_refusal(run_dir_); !refusal.empty()) throw ConfigError(refusal);
  std::error_code ec;
  created_dir_ = !fs::exists(run_dir_, ec);
  fs::create_directories(run_dir_, ec);
  if (ec) throw IoError("cannot create run directory " + run_dir_ + ": " + ec.message());
  // A failure from here on leaves the directory as it found it.
  const auto fail = [this](const std::string& message) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    if (created_dir_) {
      std::error_code ignored;
      fs::remove_all(run_dir_, ignored);
    }
    throw IoError(message);
  };
  // Never through a link, never blocking on a FIFO: whatever sits at .lock
  // is opened as itself, then checked to be a file of the run's own.
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int err = errno;
    fail(lock_error(run_dir_, err == ELOOP ? path_ + " is a symbolic link; metalm never writes through one: remove it"
                                           : path_ + ": " + std::strerror(err)));
  }
  struct stat st {};
  std::string odd;
  if (::fstat(fd_, &st) != 0)
    odd = std::strerror(errno);
  else if (!S_ISREG(st.st_mode))
    odd = "not a regular file";
  else if (st.st_nlink != 1)
    odd = "a file with " + std::to_string(st.st_nlink) + " hard links (metalm would overwrite the others)";
  if (!odd.empty()) fail(lock_error(run_dir_, path_ + " is " + odd + "; remove it"));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK) {
      const std::string holder = holder_of(fd_);
      ::close(fd_);
      fd_ = -1;
      throw IoError("run directory " + run_dir_ + " is in use by process " + holder + " (it holds " + path_ +
                    "); wait for that run to end, or choose another --run-dir");
    }
    fail(lock_error(run_dir_, path_ + ": " + std::strerror(err)));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    fail(lock_error(run_dir_, "cannot write " + path_ + ": " + std::strerror(errno)));
  const fs::path marker = fs::path(run_dir_) / kRunMarker;
  if (!fs::exists(fs::symlink_status(marker, ec))) {
    try {
      write_json_file(marker.string(), {{"format", kMarkerFormat}, {"version", kMarkerVersion}});
    } catch (const Error& e) {
      fail(e.what());
    }
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ < 0) return;
  if (created_dir_) {
    // Still locked here: nobody else can have started writing into it.
    std::error_code ec;
    bool only_ours = true;
    for (const auto& entry : fs::directory_iterator(run_dir_, ec))
      if (entry.path().filename() != ".lock" && entry.path().filename() != kRunMarker) only_ours = false;
    if (!ec && only_ours) {
      fs::remove(fs::path(run_dir_) / kRunMarker, ec);
      ::unlink(path_.c_str());
      fs::remove(run_dir_, ec);
    }
  }
  ::close(fd_);
}

}  // namespace metalm
