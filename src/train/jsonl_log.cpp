#include "metalm/train/jsonl_log.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string_view>
#include <utility>

#include "metalm/config/json.hpp"
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"

namespace metalm {
namespace {

bool has_integer_step(const nlohmann::json& j) {
  return j.is_object() && j.contains("step") && j["step"].is_number_integer();
}

[[noreturn]] void cannot_resume(const std::string& path, std::size_t line_no, std::string_view line,
                                const std::string& why, int64_t keep_through_step) {
  throw FormatError(path + ":" + std::to_string(line_no) + ": " + why + " (" + excerpt(std::string(line), 60) +
                    "); resuming keeps the lines through step " + std::to_string(keep_through_step) +
                    " and drops only the records metalm wrote after it: fix or remove that line (or move the "
                    "file aside) and resume again");
}

}  // namespace

std::string jsonl_lines_to_keep(std::string_view text, const std::string& path, int64_t keep_through_step,
                                const JsonlRecordTest& is_record, std::size_t* torn_bytes) {
  if (torn_bytes) *torn_bytes = 0;
  std::string kept;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t end = text.find('\n');
    const bool terminated = end != std::string_view::npos;
    const std::string_view line = text.substr(0, end);
    text = terminated ? text.substr(end + 1) : std::string_view{};
    nlohmann::json j;
    try {
      j = parse_json(std::string(line), path, JsonError::Format);  // depth-limited, unlike a plain parse
    } catch (const FormatError&) {
      // Appends are whole lines: only the last one, without its '\n', can
      // have been cut short (by a kill), and it was this run's own.
      if (!terminated) {
        if (torn_bytes) *torn_bytes = line.size();
        break;
      }
      cannot_resume(path, line_no, line, "not a JSON line", keep_through_step);
    }
    if (!has_integer_step(j)) cannot_resume(path, line_no, line, "no integer \"step\"", keep_through_step);
    if (j["step"].get<int64_t>() <= keep_through_step) {
      kept.append(line).push_back('\n');
      continue;
    }
    if (is_record && !is_record(j))
      cannot_resume(path, line_no, line, "a line metalm does not write, after the checkpoint's step",
                    keep_through_step);
  }
  return kept;
}

JsonlLog::JsonlLog(std::string path, int64_t keep_through_step, JsonlRecordTest is_record) : path_(std::move(path)) {
  std::string kept;
  // A resumed run keeps the records through its checkpoint's step; a log that
  // does not exist yet (killed before its first record) keeps nothing. One
  // that exists is read as any input is (a regular file, or a clear error).
  std::error_code ec;  // an unreadable path is reported by read_file below
  const bool exists = std::filesystem::symlink_status(path_, ec).type() != std::filesystem::file_type::not_found;
  if (keep_through_step >= 0 && exists) {
    std::size_t torn = 0;
    kept = jsonl_lines_to_keep(read_file(path_), path_, keep_through_step, is_record, &torn);
    if (torn > 0)
      spdlog::warn("{}: dropped its last line ({} bytes without an end of line), cut off when the run was "
                   "interrupted",
                   path_, torn);
  }
  write_file_atomic(path_, kept);
  // write_file_atomic replaced whatever was at path_ with a regular file;
  // opening it without following a link, and checking what was opened,
  // keeps anything swapped in since from receiving the appends.
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd_ < 0) throw IoError("cannot append to " + path_ + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw IoError("cannot append to " + path_ + ": not a regular file");
  }
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
