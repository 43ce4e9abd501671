#include "metalm/train/jsonl_log.hpp"

#include <cstdio>
#include <filesystem>
#include <sstream>

#include "metalm/core/error.hpp"

namespace metalm {

JsonlLog::JsonlLog(std::string path, int64_t keep_through_step) : path_(std::move(path)) {
  std::string kept;
  if (keep_through_step >= 0) {
    std::ifstream in(path_);
    std::string line;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() <= keep_through_step)
        kept += line + "\n";
    }
  }
  // Rewrite through a temporary file so the old lines survive a crash here.
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << kept;
    if (!f) throw IoError("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path_, ec);
  if (ec) throw IoError("cannot rename " + tmp + " to " + path_ + ": " + ec.message());
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw IoError("cannot append to " + path_);
}

void JsonlLog::write(const nlohmann::json& record) {
  // NaN is not JSON: nlohmann would print null, which is what readers expect.
  out_ << record.dump() << '\n';
  out_.flush();
  if (!out_) throw IoError("cannot append to " + path_);
}

}  // namespace metalm
