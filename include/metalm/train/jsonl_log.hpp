// An append-only JSON Lines file (metrics.jsonl, analysis.jsonl): one flat
// object per line, handed to the system as written, so a crashed run keeps
// every line up to the crash. A line is appended whole or not at all: a
// failed append (full disk, file size limit) cuts the file back to its last
// complete line and throws IoError naming the file and the reason.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace metalm {

// Whether a parsed line is one of the records a log writes (e.g. an "event"
// of "train" or "eval" in metrics.jsonl). Empty: every object with an
// integer "step" is.
using JsonlRecordTest = std::function<bool(const nlohmann::json&)>;

// The lines of a log (`text`, the bytes of `path`) that a run resumed at
// `keep_through_step` keeps, each ending in '\n'. It drops only what the run
// wrote and is about to write again: records (is_record) whose "step" is
// after keep_through_step, and a last line without its '\n' that does not
// parse (an append cut off by a kill). Any other line it would have to drop
// (one that does not parse, has no integer "step", or is not a record and
// comes after keep_through_step) is a FormatError naming path:line, and
// the file is left as it is. `torn_bytes`, if given, receives the size of
// a dropped cut-off last line (0 if none).
std::string jsonl_lines_to_keep(std::string_view text, const std::string& path, int64_t keep_through_step,
                                const JsonlRecordTest& is_record, std::size_t* torn_bytes = nullptr);

class JsonlLog {
 public:
  // keep_through_step < 0: start an empty file. Otherwise keep the existing
  // lines up to keep_through_step (jsonl_lines_to_keep: a resumed run
  // rewrites what came after its checkpoint, and stops rather than drop a
  // line it did not write) and append after them. The file is rewritten
  // atomically (core/atomic_file.hpp), so a crash here loses no line; it is
  // then opened for appending without following a symbolic link, and must be
  // a regular file.
  JsonlLog(std::string path, int64_t keep_through_step, JsonlRecordTest is_record = {});
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
