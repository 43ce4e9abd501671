// The one input helper every reader uses: only regular files are read (a
// FIFO never blocks), a file that shrinks is an error, and values quoted in
// messages are cut to one short line.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/threads.hpp"
#include "support/error_of.hpp"
#include "support/temp_dir.hpp"

namespace metalm {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

std::string io_error(const std::string& path) { return test::error_of<IoError>([&] { read_file(path); }); }

TEST(InputFile, ReadsARegularFileExactly) {
  TempDir dir;
  std::ofstream(dir / "a.bin", std::ios::binary) << std::string("ab\0cd", 5);
  EXPECT_EQ(read_file(dir / "a.bin"), std::string("ab\0cd", 5));
  const InputFile f(dir / "a.bin");
  EXPECT_EQ(f.size(), 5u);
  char two[2];
  f.read_at(3, two, 2);
  EXPECT_EQ(std::string(two, 2), "cd");
}

TEST(InputFile, EveryKindOfNonRegularFileIsRefusedByNameWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  EXPECT_EQ(io_error(dir / "fifo"), "cannot read " + (dir / "fifo") + ": a FIFO (named pipe), not a regular file");
  EXPECT_EQ(io_error(dir.path()), "cannot read " + dir.path() + ": a directory, not a regular file");
  EXPECT_EQ(io_error("/dev/null"), "cannot read /dev/null: a character device, not a regular file");
  EXPECT_EQ(io_error(dir / "missing"), "cannot read " + (dir / "missing") + ": No such file or directory");
}

TEST(InputFile, AFileThatShrankSinceItWasOpenedIsAnErrorNotShortData) {
  TempDir dir;
  std::ofstream(dir / "a.bin", std::ios::binary) << std::string(100, 'x');
  const InputFile f(dir / "a.bin");
  fs::resize_file(dir / "a.bin", 10);
  EXPECT_EQ(f.current_size(), 10u);
  char buf[20];
  try {
    f.read_at(0, buf, 20);
    FAIL() << "no error";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("shorter than when it was opened (100 bytes)"), std::string::npos) << e.what();
  }
}

TEST(Excerpt, ShortTextIsKeptLongTextIsCutAndMeasured) {
  EXPECT_EQ(excerpt("train.lr"), "train.lr");
  const std::string cut = excerpt(std::string(400000, 'x'));
  EXPECT_EQ(cut, std::string(80, 'x') + "... (400000 bytes)");
}

TEST(Excerpt, ControlCharactersCannotBreakTheLineAndUtf8IsNotSplit) {
  EXPECT_EQ(excerpt("a\nb\tc\x01"), "a\\nb\\tc\\x01");
  // 79 ASCII bytes then a 2-byte character straddling the cut: it is dropped whole.
  const std::string s = std::string(79, 'a') + "\xc3\xa9" + "tail";
  EXPECT_EQ(excerpt(s), std::string(79, 'a') + "... (85 bytes)");
}

TEST(Threads, CountsAboveTheCeilingAreConfigErrorsNamingTheSetting) {
  EXPECT_NO_THROW(check_threads(0, "--threads"));
  EXPECT_NO_THROW(check_threads(kMaxThreads, "--threads"));
  try {
    check_threads(100000, "train.threads");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.threads = 100000"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("to 256"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_threads(-1, "--threads"), ConfigError);
  EXPECT_THROW(set_threads(100000), ConfigError);
}

}  // namespace
}  // namespace metalm
