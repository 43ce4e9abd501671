// A file size limit for the life of the object: write(2) past it fails with
// EFBIG, as it fails with ENOSPC on a full disk, without needing a small file
// system. SIGXFSZ is ignored meanwhile (its default kills the process), and
// the limit and the handler are restored on destruction.
#pragma once

#include <sys/resource.h>

#include <csignal>

namespace metalm::test {

class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = std::signal(SIGXFSZ, SIG_IGN);
    rlimit r = saved_;
    r.rlim_cur = bytes;
    ::setrlimit(RLIMIT_FSIZE, &r);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    std::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
};

}  // namespace metalm::test
