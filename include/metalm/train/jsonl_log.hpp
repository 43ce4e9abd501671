// An append-only JSON Lines file (metrics.jsonl, analysis.jsonl): one flat
// object per line, flushed as written, so a crashed run keeps every line up
// to the crash.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <fstream>
#include <string>

namespace metalm {

class JsonlLog {
 public:
  // keep_through_step < 0: start an empty file. Otherwise keep the existing
  // lines whose "step" is <= keep_through_step (a resumed run rewrites what
  // came after its checkpoint) and append after them; lines that do not
  // parse, or have no "step", are dropped too.
  JsonlLog(std::string path, int64_t keep_through_step);

  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace metalm
