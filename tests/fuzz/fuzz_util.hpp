// What the fuzz harnesses share. Each harness (one file per reader of
// untrusted bytes) defines LLVMFuzzerTestOneInput and feeds the bytes to the
// real library function. A metalm::Error is the expected answer to bad bytes;
// anything else is a bug: a crash or sanitizer report, another exception
// (it escapes the harness and aborts), or a broken invariant (require()).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "metalm/core/error.hpp"

namespace metalm::fuzz {

// A private directory for the readers that take a path; removed at exit.
// Per process, so parallel fuzzing jobs do not share files.
inline const std::string& scratch_dir() {
  // Never destroyed: the exit handler below runs after static destructors.
  static const std::string* dir = [] {
    namespace fs = std::filesystem;
    const fs::path p = fs::temp_directory_path() / ("metalm-fuzz-" + std::to_string(::getpid()));
    fs::create_directories(p);
    return new std::string(p.string());
  }();
  static const bool cleanup = [] {
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(*dir, ec);
    });
    return true;
  }();
  (void)cleanup;
  return *dir;
}

// Writes the bytes to scratch_dir()/name (replacing it) and returns the path.
inline std::string write_scratch(const std::string& name, std::string_view bytes) {
  const std::string path = scratch_dir() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    std::fprintf(stderr, "fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

inline std::string_view as_text(const uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits at every `sep` byte (the harnesses that read several files take
// them as parts of one input, separated by ASCII record separators 0x1e).
inline std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t at = text.find(sep, start);
    parts.push_back(text.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return parts;
    start = at + 1;
  }
}

// Inputs the reader accepted and rejected (with a metalm::Error) so far.
struct Outcomes {
  std::size_t accepted = 0, rejected = 0;
};
inline Outcomes& outcomes() {
  static Outcomes counts;
  return counts;
}

// Runs fn; a metalm::Error is the expected outcome of bad input.
template <class Fn>
void expect_errors(Fn&& fn) {
  try {
    fn();
    ++outcomes().accepted;
  } catch (const metalm::Error&) {
    ++outcomes().rejected;
  }
}

// An invariant the sanitizers cannot see: abort, so the fuzzer keeps the input.
inline void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz: invariant broken: %s\n", what);
  std::abort();
}

}  // namespace metalm::fuzz
