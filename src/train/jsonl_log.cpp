#include "metalm/train/jsonl_log.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"

namespace metalm {

JsonlLog::JsonlLog(std::string path, int64_t keep_through_step) : path_(std::move(path)) {
  std::string kept;
  // A resumed run keeps the records through its checkpoint's step; a log that
  // does not exist yet (killed before its first record) keeps nothing. One
  // that exists is read as any input is (a regular file, or a clear error).
  std::error_code ec;  // an unreadable path is reported by read_file below
  const bool exists = std::filesystem::symlink_status(path_, ec).type() != std::filesystem::file_type::not_found;
  if (keep_through_step >= 0 && exists) {
    const std::string old = read_file(path_);
    std::string_view rest = old;
    while (!rest.empty()) {
      const std::size_t end = rest.find('\n');
      const std::string_view line = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
      // A line cut short by a kill does not parse and is dropped.
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() <= keep_through_step)
        kept.append(line).push_back('\n');
    }
  }
  write_file_atomic(path_, kept);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) throw IoError("cannot append to " + path_ + ": " + std::strerror(errno));
  size_ = kept.size();
}

JsonlLog::~JsonlLog() {
  if (fd_ >= 0) ::close(fd_);
}

JsonlLog::JsonlLog(JsonlLog&& other) noexcept
    : path_(std::move(other.path_)), fd_(std::exchange(other.fd_, -1)), size_(other.size_) {}

void JsonlLog::write(const nlohmann::json& record) {
  // NaN is not JSON: nlohmann prints null, which is what readers expect.
  const std::string line = record.dump() + '\n';
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t w = ::write(fd_, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      const int err = errno;
      // A line half written would break every reader of the file; cut back
      // to the last complete one (the next append starts a fresh line).
      if (::ftruncate(fd_, static_cast<off_t>(size_)) != 0)
        throw IoError("cannot append to " + path_ + ": " + std::strerror(err) + "; the last line is incomplete (" +
                      std::strerror(errno) + " while cutting it off)");
      throw IoError("cannot append to " + path_ + ": " + std::strerror(err));
    }
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  size_ += line.size();
}

}  // namespace metalm
