// What a whole-file read may be: configs and text inputs may come from a pipe
// or a device, read to a cap; every kind of input has a size cap checked
// before it is read; memory estimates beyond this machine are refused by
// name; a mistyped name gets the nearest one.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/core/suggest.hpp"
#include "support/error_of.hpp"
#include "support/temp_dir.hpp"

namespace metalm {
namespace {

using test::contains;
using test::error_of;

// Writes `text` into a pipe from another thread; path() is what a shell's
// `<(...)` passes, /dev/fd/N.
class PipeWriter {
 public:
  explicit PipeWriter(std::string text) {
    // A reader that stops early (at a cap) must end the write with EPIPE, not
    // kill the test with SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    if (::pipe(fds_) != 0) throw std::runtime_error("pipe");
    writer_ = std::thread([this, text = std::move(text)] {
      std::size_t done = 0;
      while (done < text.size()) {
        const ssize_t n = ::write(fds_[1], text.data() + done, text.size() - done);
        if (n <= 0) break;
        done += static_cast<std::size_t>(n);
      }
      ::close(fds_[1]);
    });
  }
  ~PipeWriter() {
    ::close(fds_[0]);  // the last reader: a writer still blocked gets EPIPE
    writer_.join();
  }
  std::string path() const { return "/dev/fd/" + std::to_string(fds_[0]); }

 private:
  int fds_[2] = {-1, -1};
  std::thread writer_;
};

TEST(ReadFile, TextInputsMayBeAPipeReadToItsEnd) {
  const std::string text(200000, 'x');  // more than one pipe buffer
  PipeWriter pipe(text);
  EXPECT_EQ(read_file(pipe.path(), InputKind::Text), text);
}

TEST(ReadFile, DataInputsMustBeRegularFiles) {
  PipeWriter pipe("1 2 3");
  EXPECT_TRUE(contains(error_of<IoError>([&] { read_file(pipe.path()); }), "a FIFO (named pipe), not a regular file"));
  EXPECT_EQ(error_of<IoError>([&] { read_file("/dev/zero", InputKind::Json); }),
            "cannot read /dev/zero: a character device, not a regular file");
  // Binary inputs are mapped or read at offsets: never a stream.
  EXPECT_EQ(error_of<IoError>([&] { InputFile f("/dev/zero"); }),
            "cannot read /dev/zero: a character device, not a regular file");
}

TEST(ReadFile, EveryKindHasACapCheckedBySizeBeforeReading) {
  EXPECT_EQ(max_input_bytes(InputKind::Config), uint64_t{16} << 20);
  EXPECT_EQ(max_input_bytes(InputKind::Text), uint64_t{256} << 20);
  EXPECT_EQ(max_input_bytes(InputKind::Json), uint64_t{256} << 20);
  EXPECT_EQ(max_input_bytes(InputKind::Data), uint64_t{4} << 30);
  test::TempDir dir;
  const std::string path = dir / "sparse";
  std::ofstream(path) << "x";
  std::filesystem::resize_file(path, (uint64_t{256} << 20) + 1);  // sparse: no blocks written or read
  EXPECT_EQ(error_of<IoError>([&] { read_file(path, InputKind::Text); }),
            "cannot read " + path + ": 268435457 bytes, more than the 256 MiB a text or id input may hold");
  EXPECT_TRUE(contains(error_of<IoError>([&] { read_file(path, InputKind::Json); }), "a JSON data file may hold"));
  std::filesystem::resize_file(path, (uint64_t{4} << 30) + 1);
  const std::string data = error_of<IoError>([&] { read_file(path); });
  EXPECT_TRUE(contains(data, "more than the 4096 MiB a file read whole may hold")) << data;
}

TEST(ReadFile, AStreamBeyondTheCapIsRefused) {
  PipeWriter pipe(std::string((uint64_t{16} << 20) + 1, '{'));
  EXPECT_EQ(error_of<IoError>([&] { read_file(pipe.path(), InputKind::Config); }),
            "cannot read " + pipe.path() + ": a pipe that gives more than the 16 MiB a config may hold");
}

TEST(MemoryEstimate, AnEstimateBeyondThisMachineIsAConfigErrorNamingTheOptions) {
  ASSERT_GT(physical_memory_bytes(), uint64_t{1} << 20);
  EXPECT_NO_THROW(check_memory_estimate(1024.0, "--batch 1"));
  const std::string msg =
      error_of<ConfigError>([&] { check_memory_estimate(1e18, "synthetic-icl --batch 100000000"); });
  EXPECT_TRUE(contains(msg, "synthetic-icl --batch 100000000 need about 888.2 PiB of memory (estimated), more than "
                            "twice this machine's ")) << msg;
}

TEST(MemoryEstimate, SizesArePrintedInBinaryUnits) {
  EXPECT_EQ(bytes_text(512), "512 bytes");
  EXPECT_EQ(bytes_text(1536), "1.5 KiB");
  EXPECT_EQ(bytes_text(12.8e9), "11.9 GiB");
}

TEST(Suggest, TheNearestNameWithinAFewEditsIsSuggested) {
  const std::vector<std::string> commands{"train", "eval", "analyze", "generate", "tokenize"};
  EXPECT_EQ(closest_match("trian", commands), "train");
  EXPECT_EQ(closest_match("analyse", commands), "analyze");
  EXPECT_EQ(closest_match("nosuchcmd", commands), "");
  EXPECT_EQ(edit_distance("kitten", "sitting"), 3u);
}

}  // namespace
}  // namespace metalm
