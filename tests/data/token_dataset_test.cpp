#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "metalm/core/error.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/data/token_file.hpp"
#include "support/error_of.hpp"
#include "test_paths.hpp"

namespace metalm {
namespace {

// ids i % vocab for i in [0, n)
std::string write_tokens(const std::string& name, int64_t n, int64_t vocab) {
  const std::string path = test::temp_dir("dataset_" + name) + "/tokens.bin";
  TokenFileWriter w(path, vocab);
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = i % vocab;
  w.append(ids);
  w.finish();
  return path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string error_of(const std::string& path) {
  return test::error_of<FormatError>([&] { TokenDataset d(path); });
}

TEST(TokenFile, RoundTripsUint16AndUint32Ids) {
  const TokenDataset small(write_tokens("u16", 1000, 50257));
  EXPECT_EQ(small.size(), 1000);
  EXPECT_EQ(small.vocab_size(), 50257);
  EXPECT_EQ(small.token(999), 999);
  EXPECT_EQ(std::filesystem::file_size(small.path()), 32u + 2 * 1000);
  const TokenDataset big(write_tokens("u32", 1000, 100000));
  EXPECT_EQ(std::filesystem::file_size(big.path()), 32u + 4 * 1000);
  EXPECT_EQ(big.slice(10, 3).to(at::kLong).data_ptr<int64_t>()[2], 12);
  EXPECT_THROW(big.slice(999, 2), ShapeError);
}

TEST(TokenFile, WrongMagicIsRejected) {
  const std::string path = write_tokens("magic", 100, 300);
  std::string bytes = read_bytes(path);
  bytes[0] = 'X';
  write_bytes(path, bytes);
  EXPECT_NE(error_of(path).find("magic"), std::string::npos) << error_of(path);
}

TEST(TokenFile, WrongVersionIsRejected) {
  const std::string path = write_tokens("version", 100, 300);
  std::string bytes = read_bytes(path);
  bytes[8] = 9;
  write_bytes(path, bytes);
  EXPECT_NE(error_of(path).find("version 9"), std::string::npos) << error_of(path);
}

TEST(TokenFile, TruncatedFileIsRejected) {
  const std::string path = write_tokens("truncated", 100, 300);
  const std::string bytes = read_bytes(path);
  write_bytes(path, bytes.substr(0, bytes.size() - 3));
  EXPECT_NE(error_of(path).find("truncated"), std::string::npos) << error_of(path);
  write_bytes(path, bytes.substr(0, 10));
  EXPECT_NE(error_of(path).find("truncated"), std::string::npos) << error_of(path);
}

TEST(TokenFile, Uint16IdsCannotHoldALargeVocabulary) {
  const std::string path = write_tokens("dtype", 100, 300);
  std::string bytes = read_bytes(path);
  bytes[16] = 0x00, bytes[17] = 0x00, bytes[18] = 0x02;  // vocab 131072 with uint16 ids
  write_bytes(path, bytes);
  EXPECT_NE(error_of(path).find("uint16"), std::string::npos) << error_of(path);
}

TEST(TokenFile, WriterRejectsIdsOutsideTheVocabulary) {
  TokenFileWriter w(test::temp_dir("bad_id") + "/t.bin", 10);
  EXPECT_THROW(w.append({3, 10}), FormatError);
}

TEST(RandomWindowSampler, TargetsAreInputsShiftedByOne) {
  const TokenDataset data(write_tokens("shift", 5000, 60000));  // token i == i
  RandomWindowSampler s(data, 4, 16, 42);
  const Batch b = s.next();
  ASSERT_EQ(b.inputs.sizes(), (at::IntArrayRef{4, 16}));
  EXPECT_TRUE(at::equal(b.targets, b.inputs + 1));
  EXPECT_TRUE(at::equal(b.inputs.select(1, 0) + 15, b.inputs.select(1, 15)));
}

TEST(RandomWindowSampler, SameSeedSameBatchesOtherSeedOtherBatches) {
  const TokenDataset data(write_tokens("seed", 5000, 60000));
  RandomWindowSampler a(data, 4, 16, 1), b(data, 4, 16, 1), c(data, 4, 16, 2);
  for (int i = 0; i < 5; ++i) {
    const Batch x = a.next(), y = b.next(), z = c.next();
    EXPECT_TRUE(at::equal(x.inputs, y.inputs));
    EXPECT_FALSE(at::equal(x.inputs, z.inputs));
  }
}

TEST(RandomWindowSampler, RestoredSamplerSeesExactlyTheBatchesItWouldHaveSeen) {
  const TokenDataset data(write_tokens("restore", 5000, 60000));
  RandomWindowSampler uninterrupted(data, 3, 8, 7), first(data, 3, 8, 7);
  for (int i = 0; i < 4; ++i) first.next(), uninterrupted.next();
  const nlohmann::json saved = nlohmann::json::parse(first.state().dump());
  RandomWindowSampler resumed(data, 3, 8, 7);
  resumed.restore(saved);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(at::equal(resumed.next().inputs, uninterrupted.next().inputs));
  RandomWindowSampler other(data, 3, 8, 8);
  EXPECT_THROW(other.restore(saved), ConfigError);
}

TEST(FixedEvalBatches, AreTheSameEveryCallAndSpanTheSplit) {
  const TokenDataset data(write_tokens("eval", 1000, 60000));
  const auto a = fixed_eval_batches(data, 2, 3, 9), b = fixed_eval_batches(data, 2, 3, 9);
  ASSERT_EQ(a.size(), 2u);
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].inputs, b[i].inputs));
  EXPECT_EQ(a[0].inputs[0][0].item<int64_t>(), 0);
  EXPECT_EQ(a[1].targets[2][8].item<int64_t>(), 999);  // the last window ends at the last token
}

TEST(Samplers, DataShorterThanOneWindowIsAShapeError) {
  const TokenDataset data(write_tokens("short", 10, 300));
  EXPECT_THROW(RandomWindowSampler(data, 1, 10, 0), ShapeError);
}

}  // namespace
}  // namespace metalm
