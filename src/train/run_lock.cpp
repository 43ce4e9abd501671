#include "metalm/train/run_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "metalm/core/error.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

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

}  // namespace

RunDirLock::RunDirLock(const std::string& run_dir) : run_dir_(run_dir), path_((fs::path(run_dir) / ".lock").string()) {
  std::error_code ec;
  created_dir_ = !fs::exists(run_dir_, ec);
  fs::create_directories(run_dir_, ec);
  if (ec) throw IoError("cannot create run directory " + run_dir_ + ": " + ec.message());
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw IoError("cannot lock run directory " + run_dir_ + ": " + path_ + ": " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = holder_of(fd_);
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw IoError("run directory " + run_dir_ + " is in use by process " + holder + " (it holds " + path_ +
                    "); wait for that run to end, or choose another --run-dir");
    throw IoError("cannot lock run directory " + run_dir_ + ": " + path_ + ": " + std::strerror(err));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw IoError("cannot lock run directory " + run_dir_ + ": cannot write " + path_ + ": " + std::strerror(err));
  }
}

RunDirLock::~RunDirLock() {
  if (fd_ < 0) return;
  if (created_dir_) {
    // Still locked here: nobody else can have started writing into it.
    std::error_code ec;
    bool only_lock = true;
    for (const auto& entry : fs::directory_iterator(run_dir_, ec))
      if (entry.path().filename() != ".lock") only_lock = false;
    if (!ec && only_lock) {
      ::unlink(path_.c_str());
      fs::remove(run_dir_, ec);
    }
  }
  ::close(fd_);
}

}  // namespace metalm
