// Replays fuzz inputs through a harness in the normal build: every file
// under the directories (or the files) given on the command line is fed to
// the harness's LLVMFuzzerTestOneInput, as libFuzzer would. ctest runs it on
// each target's seed corpus and crash regressions (tests/fuzz/corpus/<target>,
// tests/fuzz/regressions/<target>), so every input that once crashed stays
// fixed without clang or a fuzzing run.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg(argv[i]);
    if (fs::is_directory(arg)) {
      for (const auto& entry : fs::recursive_directory_iterator(arg))
        if (entry.is_regular_file()) files.push_back(entry.path());
    } else if (fs::is_regular_file(arg)) {
      files.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a directory\n", argv[i]);
      return 2;
    }
  }
  if (files.empty()) {
    std::fprintf(stderr, "replay: no inputs (usage: %s DIR_OR_FILE...)\n", argv[0]);
    return 2;
  }
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    // Named before it runs: a crash's output ends with the input that caused it.
    std::printf("replay: %s\n", path.c_str());
    std::fflush(stdout);
    std::ifstream in(path, std::ios::binary);
    const std::string bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    // A copy of exactly the input's size (never null, like libFuzzer's), so
    // reads past its end are caught by the sanitizers here too.
    const std::unique_ptr<uint8_t[]> data(new uint8_t[bytes.size()]);
    std::copy(bytes.begin(), bytes.end(), data.get());
    LLVMFuzzerTestOneInput(data.get(), bytes.size());
  }
  // Both counts matter: a corpus the reader rejects entirely would only
  // ever test its first checks.
  const auto& counts = metalm::fuzz::outcomes();
  std::printf("replay: %zu inputs, none crashed: %zu accepted, %zu rejected with metalm::Error\n", files.size(),
              counts.accepted, counts.rejected);
  return 0;
}
