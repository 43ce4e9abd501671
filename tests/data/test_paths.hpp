// Paths the data tests share: committed fixtures and GPT-2's files.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace metalm::test {

inline std::string fixture(const std::string& name) {
  return std::string(METALM_SOURCE_DIR) + "/tests/data/fixtures/" + name;
}

// $METALM_DATA/gpt2, default <source>/data/gpt2 (filled by scripts/dev/setup.sh).
inline std::string gpt2_dir() {
  const char* data = std::getenv("METALM_DATA");
  return (data && *data ? std::string(data) : std::string(METALM_SOURCE_DIR) + "/data") + "/gpt2";
}

inline bool gpt2_available() {
  namespace fs = std::filesystem;
  return fs::is_regular_file(gpt2_dir() + "/encoder.json") && fs::is_regular_file(gpt2_dir() + "/vocab.bpe");
}

// A fresh empty directory under the build tree.
inline std::string temp_dir(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path p = fs::path(METALM_BINARY_DIR) / "test_tmp" / "data" / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

}  // namespace metalm::test
