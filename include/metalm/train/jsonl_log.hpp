// An append-only JSON Lines file (metrics.jsonl, analysis.jsonl): one flat
// object per line, handed to the system as written, so a crashed run keeps
// every line up to the crash. A line is appended whole or not at all: a
// failed append (full disk, file size limit) cuts the file back to its last
// complete line and throws IoError naming the file and the reason.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace metalm {

class JsonlLog {
 public:
  // keep_through_step < 0: start an empty file. Otherwise keep the existing
  // lines whose "step" is <= keep_through_step (a resumed run rewrites what
  // came after its checkpoint) and append after them; lines that do not
  // parse, or have no "step", are dropped too. The file is rewritten
  // atomically (core/atomic_file.hpp), so a crash here loses no line.
  JsonlLog(std::string path, int64_t keep_through_step);
  ~JsonlLog();
  JsonlLog(JsonlLog&& other) noexcept;
  JsonlLog& operator=(JsonlLog&&) = delete;
  JsonlLog(const JsonlLog&) = delete;
  JsonlLog& operator=(const JsonlLog&) = delete;

  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;  // bytes of complete lines in the file
};

}  // namespace metalm
