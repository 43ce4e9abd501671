// A fresh temporary directory for one test, removed with the object (also
// when the test fails, so a rerun starts clean). mkdtemp makes the name unique,
// so tests of different suites can run in parallel.
#pragma once

#include <stdlib.h>

#include <cerrno>
#include <filesystem>
#include <string>
#include <system_error>

namespace metalm::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "metalm-test-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::filesystem::filesystem_error("cannot make a temporary directory", tmpl,
                                              std::error_code(errno, std::generic_category()));
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The path of NAME inside the directory.
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace metalm::test
