// The one atomic-write helper: whole files or nothing, one error wording,
// and the output-path rule every command applies.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "support/error_of.hpp"
#include "support/file_size_limit.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;

namespace metalm {
namespace {

using test::FileSizeLimit;
using test::TempDir;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> names_in(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(WriteFileAtomic, ReplacesTheFileAndLeavesNoTemporary) {
  TempDir tmp;
  write_file_atomic(tmp / "a.txt", "first");
  write_file_atomic(tmp / "a.txt", "second, longer");
  EXPECT_EQ(slurp(tmp / "a.txt"), "second, longer");
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"a.txt"});
}

TEST(WriteFileAtomic, AFailedWriteNamesTheFileAndReasonAndKeepsTheOldFile) {
  TempDir tmp;
  const std::string path = tmp / "kept.json";
  write_file_atomic(path, "old");
  try {
    FileSizeLimit limit(1000);
    write_file_atomic(path, std::string(5000, 'x'));
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write " + path + ": " + std::strerror(EFBIG));
  }
  EXPECT_EQ(slurp(path), "old");
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"kept.json"});
}

TEST(WriteFileAtomic, AMissingDirectoryIsAnIoErrorNamingThePath) {
  TempDir tmp;
  const std::string path = tmp / "no/such/dir/f.txt";
  try {
    write_file_atomic(path, "x");
    FAIL() << "expected IoError";
  } catch (const IoError& e) {
    EXPECT_EQ(std::string(e.what()), "cannot write " + path + ": " + std::strerror(ENOENT));
  }
}

TEST(AtomicFile, UncommittedLeavesNothing) {
  TempDir tmp;
  {
    AtomicFile f(tmp / "never.bin");
    f.write("abc", 3);
  }
  EXPECT_TRUE(names_in(tmp.path()).empty());
}

TEST(AtomicFile, WriteAtPatchesAHeaderWithoutMovingTheEnd) {
  TempDir tmp;
  AtomicFile f(tmp / "h.bin");
  f.write("....tail", 8);
  f.write_at(0, "HEAD", 4);
  f.write("!", 1);
  f.commit();
  EXPECT_EQ(slurp(tmp / "h.bin"), "HEADtail!");
}

TEST(AtomicDir, ReplacesAnExistingDirectoryAsAWhole) {
  TempDir tmp;
  const std::string dir = tmp / "out";
  fs::create_directories(dir);
  write_file_atomic(dir + "/old.txt", "old");
  AtomicDir d(dir + "/");  // a trailing slash names the same directory
  write_file_atomic(d / "new.txt", "new");
  EXPECT_EQ(slurp(dir + "/old.txt"), "old");  // untouched until commit
  d.commit();
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"new.txt"});
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"out"});  // no .tmp- or .old- sibling
}

TEST(AtomicDir, UncommittedLeavesTheOldDirectoryAlone) {
  TempDir tmp;
  const std::string dir = tmp / "out";
  fs::create_directories(dir);
  write_file_atomic(dir + "/old.txt", "old");
  {
    AtomicDir d(dir);
    write_file_atomic(d / "new.txt", "new");
  }
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"old.txt"});
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"out"});
}

TEST(AtomicDir, NeverReplacesAFile) {
  TempDir tmp;
  write_file_atomic(tmp / "out", "a file");
  AtomicDir d(tmp / "out");
  write_file_atomic(d / "x", "x");
  EXPECT_THROW(d.commit(), IoError);
  EXPECT_EQ(slurp(tmp / "out"), "a file");
  EXPECT_EQ(names_in(tmp.path()), std::vector<std::string>{"out"});
}

TEST(CheckOutputPath, NewPathsAndEmptyDirectoriesAreFine) {
  TempDir tmp;
  EXPECT_NO_THROW(check_output_path(tmp / "new", OutputKind::Directory, false, "--out"));
  EXPECT_NO_THROW(check_output_path(tmp / "new.json", OutputKind::File, false, "--out"));
  fs::create_directories(tmp / "empty");
  EXPECT_NO_THROW(check_output_path(tmp / "empty", OutputKind::Directory, false, "--out"));
}

TEST(CheckOutputPath, SomethingThereIsReplacedOnlyWithForceAndOnlyByItsOwnKind) {
  TempDir tmp;
  fs::create_directories(tmp / "full");
  write_file_atomic(tmp / "full/x", "x");
  write_file_atomic(tmp / "file", "f");
  auto message = [](auto&& fn) {
    try {
      fn();
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto full = tmp / "full", file = tmp / "file";
  EXPECT_EQ(message([&] { check_output_path(full, OutputKind::Directory, false, "--csv"); }),
            "--csv " + full + " is a directory that is not empty; choose another path, or pass --force to replace it "
            "and everything in it");
  EXPECT_NO_THROW(check_output_path(full, OutputKind::Directory, true, "--csv"));
  EXPECT_EQ(message([&] { check_output_path(file, OutputKind::File, false, "--out"); }),
            "--out " + file + " already exists; choose another path, or pass --force to replace it");
  EXPECT_NO_THROW(check_output_path(file, OutputKind::File, true, "--out"));
  // The other kind is never replaced, --force or not.
  for (bool force : {false, true}) {
    EXPECT_THROW(check_output_path(file, OutputKind::Directory, force, "--out"), ConfigError);
    EXPECT_THROW(check_output_path(full, OutputKind::File, force, "--out"), ConfigError);
  }
}

// ---- never through a link -------------------------------------------------------

TEST(WriteFileAtomic, ALinkPlantedAtTheTemporaryNameIsNeverWrittenThrough) {
  TempDir tmp;
  write_file_atomic(tmp / "precious.txt", "keep me");
  const std::string path = tmp / "out.json";
  fs::create_symlink(tmp / "precious.txt", path + ".tmp-" + std::to_string(::getpid()));
  write_file_atomic(path, "new");
  EXPECT_EQ(slurp(tmp / "precious.txt"), "keep me");
  EXPECT_EQ(slurp(path), "new");
  EXPECT_EQ(names_in(tmp.path()), (std::vector<std::string>{"out.json", "precious.txt"}));
}

TEST(WriteFileAtomic, ALinkAtThePathIsReplacedNotFollowed) {
  TempDir tmp;
  write_file_atomic(tmp / "precious.txt", "keep me");
  fs::create_symlink(tmp / "precious.txt", tmp / "out.json");
  write_file_atomic(tmp / "out.json", "new");
  EXPECT_EQ(slurp(tmp / "precious.txt"), "keep me");
  EXPECT_FALSE(fs::is_symlink(tmp / "out.json"));
}

TEST(AtomicDir, TheParentsItCreatedGoAgainWhenItIsNeverCommitted) {
  TempDir tmp;
  {
    AtomicDir d(tmp / "a/b/out");
    write_file_atomic(d / "x", "x");
  }
  EXPECT_TRUE(names_in(tmp.path()).empty());
}

TEST(CheckOutputPath, ALinkAtTheOutputIsRefusedWithOrWithoutForce) {
  TempDir tmp;
  write_file_atomic(tmp / "precious.txt", "keep me");
  fs::create_symlink(tmp / "precious.txt", tmp / "out.json");
  for (bool force : {false, true})
    EXPECT_THROW(check_output_path(tmp / "out.json", OutputKind::File, force, "--out"), ConfigError);
}

// ---- outputs and inputs never overlap ---------------------------------------------

std::string overlap(const std::string& out, OutputKind kind, const std::vector<CommandInput>& inputs) {
  try {
    check_output_path(out, kind, /*force=*/true, "--out", inputs);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

TEST(CheckOutputPath, AnOutputThatIsOrHoldsAnInputIsRefusedEvenWithForce) {
  TempDir tmp;
  fs::create_directories(tmp / "corpus/sub");
  write_file_atomic(tmp / "corpus/sub/a.txt", "text");
  fs::create_symlink(tmp / "corpus", tmp / "link");
  const std::string corpus = tmp / "corpus", file = tmp / "corpus/sub/a.txt";
  EXPECT_EQ(overlap(corpus, OutputKind::Directory, {{"--input", corpus}}),
            "--out " + corpus + " and --input " + corpus + " are the same directory; metalm never writes over what "
            "it reads, --force or not: choose another --out");
  EXPECT_TRUE(test::contains(overlap(tmp / "link", OutputKind::Directory, {{"--input", corpus}}), "same directory"));
  EXPECT_TRUE(test::contains(overlap(corpus + "/../corpus/", OutputKind::Directory, {{"--input", corpus}}),
                             "same directory"));
  EXPECT_TRUE(test::contains(overlap(file, OutputKind::File, {{"--input", tmp / "link/sub/a.txt"}}), "same file"));
  EXPECT_TRUE(test::contains(overlap(tmp.path(), OutputKind::Directory, {{"--input", file}}),
                             "--input is inside --out, which would be replaced"));
  EXPECT_TRUE(test::contains(overlap(tmp / "link/sub/new", OutputKind::Directory, {{"--input", corpus, true}}),
                             "--out is inside --input, which is read as a whole"));
  EXPECT_TRUE(test::contains(overlap(tmp / "x.json", OutputKind::File, {{"--hf-config", tmp / "./x.json"}}),
                             "are the same path"));
}

TEST(CheckOutputPath, ANewOutputBesideOrInsideAnInputThatIsNotReadWholeIsFine) {
  TempDir tmp;
  fs::create_directories(tmp / "run");
  write_file_atomic(tmp / "run/config.json", "{}");
  EXPECT_EQ(overlap(tmp / "run/analysis.json", OutputKind::File, {{"--checkpoint", tmp / "run"}}), "no error");
  EXPECT_EQ(overlap(tmp / "other", OutputKind::Directory, {{"--input", tmp / "run", true}}), "no error");
}

}  // namespace
}  // namespace metalm
