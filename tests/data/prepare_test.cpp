#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>

#include "metalm/core/error.hpp"
#include "metalm/data/dataset_meta.hpp"
#include "metalm/data/prepare.hpp"
#include "metalm/data/token_dataset.hpp"
#include "test_paths.hpp"

namespace metalm {
namespace fs = std::filesystem;
namespace {

// A corpus of `n` small text documents.
std::string make_corpus(const std::string& name, int n, const std::string& extra = "") {
  const std::string dir = test::temp_dir(name);
  for (int i = 0; i < n; ++i) {
    char file[32];
    std::snprintf(file, sizeof file, "doc%02d.txt", i);
    std::ofstream(dir + "/" + file) << "document number " << i << " says hello.\n";
  }
  if (!extra.empty()) std::ofstream(dir + "/zz_extra.txt", std::ios::binary) << extra;
  return dir;
}

TEST(ValDocuments, SplitIsDeterministicAndSized) {
  const auto a = val_documents(100, 0.05, 3), b = val_documents(100, 0.05, 3), c = val_documents(100, 0.05, 4);
  EXPECT_EQ(a.size(), 5u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(val_documents(3, 0.05, 1).size(), 1u);  // at least one held out
  EXPECT_TRUE(val_documents(10, 0.0, 1).empty());
  EXPECT_THROW(val_documents(10, 1.0, 1), ConfigError);
}

TEST(Prepare, WritesSplitsWithEndOfTextAndCounts) {
  PrepareOptions o;
  o.tokenizer = "byte";
  o.inputs = {make_corpus("prep_corpus", 20)};
  o.val_fraction = 0.1;
  o.seed = 5;
  o.out = test::temp_dir("prep_out");
  const DatasetMeta m = prepare_dataset(o);
  const DatasetMeta read = read_dataset_meta(o.out);
  EXPECT_EQ(read.tokenizer, "byte");
  EXPECT_EQ(read.vocab_size, 257);
  EXPECT_EQ(read.train.documents, 18);
  EXPECT_EQ(read.val.documents, 2);
  const TokenDataset train(o.out + "/train.bin"), val(o.out + "/val.bin");
  EXPECT_EQ(train.size(), read.train.tokens);
  EXPECT_EQ(val.size(), read.val.tokens);
  // Byte tokens: one per byte plus one end-of-text per document.
  EXPECT_EQ(read.train.tokens, read.train.bytes + read.train.documents);
  EXPECT_EQ(read.train_counts[256], read.train.documents);
  EXPECT_EQ(std::accumulate(read.train_counts.begin(), read.train_counts.end(), int64_t{0}), read.train.tokens);
  EXPECT_EQ(train.token(train.size() - 1), 256);
  EXPECT_NEAR(read.bytes_per_token(read.train), double(read.train.bytes) / read.train.tokens, 1e-12);
  EXPECT_EQ(m.train_counts, read.train_counts);
  for (const auto& entry : fs::directory_iterator(o.out))
    EXPECT_EQ(entry.path().string().find(".tmp."), std::string::npos) << entry.path();
}

TEST(Prepare, FailureLeavesNoPartialOutput) {
  PrepareOptions o;
  o.tokenizer = "bpe:" + test::fixture("tiny_bpe");
  o.inputs = {make_corpus("prep_bad_corpus", 5, "bad utf-8: \xff\n")};
  o.out = test::temp_dir("prep_bad_out");
  try {
    prepare_dataset(o);
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("zz_extra.txt"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("byte offset 11"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_empty(o.out));
}

TEST(DatasetMeta, MissingOrForeignMetaIsAClearError) {
  EXPECT_THROW(read_dataset_meta(test::temp_dir("no_meta")), IoError);
  const std::string dir = test::temp_dir("foreign_meta");
  std::ofstream(dir + "/meta.json") << "{\"format\": \"other\"}";
  EXPECT_THROW(read_dataset_meta(dir), FormatError);
}

}  // namespace
}  // namespace metalm
