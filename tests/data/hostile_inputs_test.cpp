// Hostile data files: token files whose header lies, ids outside the
// vocabulary, a file that shrinks under a running reader, inputs that are not
// regular files, and meta.json / encoder.json that are nested or sized to
// break a parser. Each must be a typed one-line error naming the file.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>

#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/data/bpe_tokenizer.hpp"
#include "metalm/data/dataset_meta.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/data/token_file.hpp"
#include "support/error_of.hpp"
#include "test_paths.hpp"

namespace metalm {
namespace {

namespace fs = std::filesystem;

void put_le(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

// A token file written byte by byte, the way a corrupt or hostile one could be.
std::string raw_token_file(const std::string& path, uint32_t id_bytes, uint64_t vocab, uint64_t count,
                           const std::vector<uint32_t>& ids) {
  std::string bytes = "MLMTOKEN";
  put_le(bytes, 1, 4);
  put_le(bytes, id_bytes, 4);
  put_le(bytes, vocab, 8);
  put_le(bytes, count, 8);
  for (uint32_t id : ids) put_le(bytes, id, static_cast<int>(id_bytes));
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

std::string tokens_path(const std::string& name) { return test::temp_dir("hostile_" + name) + "/tokens.bin"; }

// ids i % vocab for i in [0, n)
std::string good_token_file(const std::string& name, int64_t n, int64_t vocab) {
  const std::string path = tokens_path(name);
  TokenFileWriter w(path, vocab);
  std::vector<int64_t> ids(static_cast<std::size_t>(n));
  for (int64_t i = 0; i < n; ++i) ids[static_cast<std::size_t>(i)] = i % vocab;
  w.append(ids);
  w.finish();
  return path;
}

using test::contains;
using test::error_of;

TEST(HostileTokenFile, CountWhoseByteSizeOverflowsIsTruncationNotAHugeFile) {
  // 32 + (2^62 + 1) * 4 wraps to 36 bytes: exactly this file's size.
  const std::string path = raw_token_file(tokens_path("overflow"), 4, 100000, (uint64_t{1} << 62) + 1, {7});
  ASSERT_EQ(fs::file_size(path), 36u);
  const std::string msg = error_of<FormatError>([&] { TokenDataset d(path); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, "truncated") && contains(msg, "room for 1 ids")) << msg;
}

TEST(HostileTokenFile, IdOutsideTheHeaderVocabularyIsRefusedAtOpenWithItsPosition) {
  const std::string path = raw_token_file(tokens_path("bad_id"), 2, 257, 4, {1, 2, 60000, 3});
  const std::string msg = error_of<FormatError>([&] { TokenDataset d(path); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, "token id 60000 at position 2") &&
              contains(msg, "vocabulary of 257"))
      << msg;
}

TEST(HostileTokenFile, MaxIdIsTheLargestIdForBothWidths) {
  const std::string narrow = raw_token_file(tokens_path("max16"), 2, 65536, 5, {4, 65535, 0, 9, 65534});
  EXPECT_EQ(TokenDataset(narrow).max_id(), 65535);
  const std::string wide = raw_token_file(tokens_path("max32"), 4, 100000, 3, {99999, 5, 70000});
  EXPECT_EQ(TokenDataset(wide).max_id(), 99999);
  const std::string empty = raw_token_file(tokens_path("max_empty"), 2, 10, 0, {});
  EXPECT_EQ(TokenDataset(empty).max_id(), -1);
}

TEST(HostileTokenFile, VocabularyLargerThanTheModelsNamesTheFile) {
  const TokenDataset d(good_token_file("vocab", 100, 300));
  EXPECT_NO_THROW(d.check_vocab(300, "the model"));
  const std::string msg = error_of<FormatError>([&] { d.check_vocab(257, "the model"); });
  EXPECT_TRUE(contains(msg, d.path()) && contains(msg, "300") && contains(msg, "the model's 257")) << msg;
}

TEST(HostileTokenFile, FifoIsRefusedWithoutBlocking) {
  const std::string path = test::temp_dir("hostile_fifo") + "/tokens.bin";
  ASSERT_EQ(::mkfifo(path.c_str(), 0600), 0);
  // Opening a FIFO for reading blocks until a writer appears; the reader must
  // look before it waits.
  const std::string msg = error_of<IoError>([&] { TokenDataset d(path); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, "FIFO")) << msg;
}

TEST(HostileTokenFile, DirectoryIsRefusedByName) {
  const std::string dir = test::temp_dir("hostile_dir");
  const std::string msg = error_of<IoError>([&] { TokenDataset d(dir); });
  EXPECT_TRUE(contains(msg, dir) && contains(msg, "a directory, not a regular file")) << msg;
}

// The mapping is private: /proc/self/maps shows "r--p" (not "r--s") for it.
TEST(HostileTokenFile, FileIsMappedPrivately) {
  const TokenDataset d(good_token_file("private", 5000, 300));
  std::ifstream maps("/proc/self/maps");
  const std::string target = fs::canonical(d.path()).string();
  std::string line, perms;
  while (std::getline(maps, line))
    if (line.size() >= target.size() && line.compare(line.size() - target.size(), target.size(), target) == 0)
      perms = line.substr(line.find(' ') + 1, 4);
  EXPECT_EQ(perms, "r--p");
}

// A token file truncated while a run reads it cannot be read any more; the
// kernel raises SIGBUS, and the CLI's handler turns it into one line and
// exit code 1 rather than a silent core dump.
TEST(HostileTokenFileDeathTest, TruncatedWhileMappedFailsWithOneLineNotASilentCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  const std::string path = good_token_file("sigbus", 200000, 300);  // 400 KB: many pages past the header
  EXPECT_EXIT(
      {
        install_mapped_file_fault_handler();
        const TokenDataset d(path);
        ::truncate(path.c_str(), 32);
        std::printf("%lld\n", static_cast<long long>(d.token(190000)));
        std::exit(0);
      },
      ::testing::ExitedWithCode(1), "metalm: error: bus error reading a memory-mapped input: a token file shrank");
}

TEST(HostileSamplers, SizesWhoseProductOverflowsAreShapeErrorsBeforeAllocating) {
  const TokenDataset d(good_token_file("overflow_batch", 1000, 300));
  const int64_t huge = std::numeric_limits<int64_t>::max() / 4;
  EXPECT_THROW(RandomWindowSampler(d, huge, 8, 0), ShapeError);
  EXPECT_THROW(fixed_eval_batches(d, huge, 8, 8), ShapeError);
  EXPECT_THROW(RandomWindowSampler(d, 2, std::numeric_limits<int64_t>::max(), 0), ShapeError);
}

// ---- meta.json and encoder.json --------------------------------------------

nlohmann::json good_meta() {
  return {{"format", "metalm-dataset"}, {"version", 1}, {"tokenizer", "byte"}, {"vocab_size", 3}, {"eot_id", 2},
          {"train", {{"documents", 1}, {"bytes", 10}, {"tokens", 11}}},
          {"val", {{"documents", 1}, {"bytes", 5}, {"tokens", 6}}}, {"train_counts", {5, 5, 1}}};
}

std::string write_text(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  return path;
}

TEST(HostileMeta, DeepNestingIsAFormatErrorNotAStackOverflow) {
  const std::string dir = test::temp_dir("meta_deep");
  const std::string path =
      write_text(dir, "meta.json", "{\"train_counts\": " + std::string(100000, '[') + std::string(100000, ']') + "}");
  const std::string msg = error_of<FormatError>([&] { read_dataset_meta(dir); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, "nested deeper than 256 levels")) << msg;
}

TEST(HostileMeta, NumberBeyondADoubleNamesTheKey) {
  const std::string dir = test::temp_dir("meta_1e999");
  std::string text = good_meta().dump();
  text.replace(text.find("\"bytes\":10"), 10, "\"bytes\":1e999");
  write_text(dir, "meta.json", text);
  const std::string msg = error_of<FormatError>([&] { read_dataset_meta(dir); });
  EXPECT_TRUE(contains(msg, "train.bytes: number 1e999 is out of range")) << msg;
}

TEST(HostileMeta, ImpossibleValuesNameTheKey) {
  const std::string dir = test::temp_dir("meta_values");
  auto error_with = [&](const std::string& key, const nlohmann::json& value) {
    nlohmann::json j = good_meta();
    j[nlohmann::json::json_pointer(key)] = value;
    write_text(dir, "meta.json", j.dump());
    return error_of<FormatError>([&] { read_dataset_meta(dir); });
  };
  EXPECT_TRUE(contains(error_with("/train_counts/1", -4), "train_counts[1] = -4 is negative"));
  EXPECT_TRUE(contains(error_with("/train_counts/1", 2.5), "'train_counts' must be a list of integers"));
  EXPECT_TRUE(contains(error_with("/eot_id", 3), "eot_id 3 is outside the vocabulary [0, 3)"));
  EXPECT_TRUE(contains(error_with("/vocab_size", 1e300), "'vocab_size' must be an integer"));
  EXPECT_TRUE(contains(error_with("/val/tokens", -1), "must not be negative"));
  EXPECT_EQ(error_with("/eot_id", 2), "(no error of the expected type)");  // the good one reads
}

TEST(HostileMeta, MissingFileSaysWhoWritesIt) {
  const std::string dir = test::temp_dir("meta_missing");
  const std::string msg = error_of<IoError>([&] { read_dataset_meta(dir); });
  EXPECT_TRUE(contains(msg, dir + "/meta.json") && contains(msg, "metalm prepare")) << msg;
}

TEST(HostileEncoderJson, DeepNestingAndHugeKeysGiveShortErrors) {
  const std::string dir = test::temp_dir("encoder_deep");
  write_text(dir, "vocab.bpe", "#version: 0.2\n");
  write_text(dir, "encoder.json", std::string(100000, '[') + std::string(100000, ']'));
  const std::string deep = error_of<FormatError>([&] { BpeTokenizer::load(dir, "bpe:" + dir); });
  EXPECT_TRUE(contains(deep, dir + "/encoder.json") && contains(deep, "nested deeper than 256")) << deep;

  write_text(dir, "encoder.json", "{\"" + std::string(400000, 'a') + "\": -1}");
  const std::string big = error_of<FormatError>([&] { BpeTokenizer::load(dir, "bpe:" + dir); });
  EXPECT_TRUE(contains(big, "must be an integer")) << big;
  EXPECT_LT(big.size(), 400u) << big.size();
}

}  // namespace
}  // namespace metalm
