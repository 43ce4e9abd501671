#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/data/tokenizer.hpp"
#include "test_paths.hpp"

namespace metalm {
namespace {

using Ids = std::vector<int64_t>;

TEST(ByteTokenizer, RoundTripsArbitraryBytes) {
  const auto tok = make_tokenizer("byte");
  EXPECT_EQ(tok->vocab_size(), 257);
  EXPECT_EQ(tok->eot_id(), 256);
  std::string all;
  for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
  std::mt19937 rng(7);
  for (int i = 0; i < 1000; ++i) all += static_cast<char>(rng() & 0xff);
  const Ids ids = tok->encode(all);
  ASSERT_EQ(ids.size(), all.size());
  EXPECT_EQ(ids[200], 200);
  EXPECT_EQ(tok->decode(ids), all);
  EXPECT_THROW(tok->decode({257}), FormatError);
}

TEST(MakeTokenizer, UnknownSpecIsAConfigError) {
  EXPECT_THROW(make_tokenizer("wordpiece"), ConfigError);
}

TEST(MakeTokenizer, MissingFilesNameTheFileAndTheRemedy) {
  try {
    make_tokenizer("bpe:/nonexistent/dir");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/encoder.json"), std::string::npos) << e.what();
  }
}

// The hand-made fixture: 256 byte tokens then he, Ġt, Ġthe, ll, ell, the, Ġw,
// or (ids 256..263) and end-of-text 264.
class TinyBpe : public ::testing::Test {
 protected:
  std::unique_ptr<Tokenizer> tok = make_tokenizer("bpe:" + test::fixture("tiny_bpe"));
};

TEST_F(TinyBpe, HasVocabAndEndOfText) {
  EXPECT_EQ(tok->vocab_size(), 265);
  EXPECT_EQ(tok->eot_id(), 264);
  EXPECT_EQ(tok->decode({264}), "<|endoftext|>");
}

TEST_F(TinyBpe, AppliesMergesByRank) {
  // h e l l o: "he" (rank 0) first, then "ll" (rank 3); "hell" is no token.
  EXPECT_EQ(tok->encode("hello"), (Ids{256, 259, 78}));
  // t e l l: "ll", then "ell" (rank 4).
  EXPECT_EQ(tok->encode("tell"), (Ids{83, 260}));
  // " the" is a token; " world": "Ġw" (rank 6) then "or" (rank 7).
  EXPECT_EQ(tok->encode(" the world"), (Ids{258, 262, 263, 75, 67}));
  // Ġ t h e x: "he" (0), "Ġt" (1), then "Ġthe" (2).
  EXPECT_EQ(tok->encode(" thex"), (Ids{258, 87}));
}

TEST_F(TinyBpe, RoundTripsValidUtf8) {
  const std::string text = "hello there, the world \xe2\x9c\xa8 tell\n\n  ok  ";
  EXPECT_EQ(tok->decode(tok->encode(text)), text);
}

TEST_F(TinyBpe, EndOfTextInTextIsOrdinaryText) {
  const Ids ids = tok->encode("<|endoftext|>");
  EXPECT_GT(ids.size(), 1u);
  for (auto id : ids) EXPECT_NE(id, tok->eot_id());
}

TEST_F(TinyBpe, InvalidUtf8IsAFormatErrorWithOffset) {
  try {
    tok->encode(std::string("hello \x80"));
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("byte offset 6"), std::string::npos) << e.what();
  }
}

class Gpt2 : public ::testing::Test {
 protected:
  // Loaded once for the suite: parsing GPT-2's 50k-token files takes a moment.
  static void SetUpTestSuite() {
    if (test::gpt2_available()) shared = make_tokenizer("gpt2:" + test::gpt2_dir()).release();
  }
  static void TearDownTestSuite() {
    delete shared;
    shared = nullptr;
  }
  void SetUp() override {
    if (!shared)
      GTEST_SKIP() << "GPT-2's encoder.json/vocab.bpe not found in " << test::gpt2_dir()
                   << " (run scripts/dev/setup.sh or set METALM_DATA)";
    tok = shared;
  }
  static Tokenizer* shared;
  const Tokenizer* tok = nullptr;
};

Tokenizer* Gpt2::shared = nullptr;

TEST_F(Gpt2, MatchesTiktokenOnTheStressText) {
  const std::string text = read_file(test::fixture("gpt2_stress.txt"));
  const auto golden = nlohmann::json::parse(read_file(test::fixture("gpt2_stress.tiktoken.json")));
  const Ids expected = golden.at("ids").get<Ids>();
  const Ids ids = tok->encode(text);
  ASSERT_EQ(ids.size(), expected.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ASSERT_EQ(ids[i], expected[i]) << "at token " << i;
}

TEST_F(Gpt2, RoundTripsTheStressText) {
  const std::string text = read_file(test::fixture("gpt2_stress.txt"));
  EXPECT_EQ(tok->decode(tok->encode(text)), text);
}

TEST_F(Gpt2, KnownIds) {
  EXPECT_EQ(tok->vocab_size(), 50257);
  EXPECT_EQ(tok->eot_id(), 50256);
  EXPECT_EQ(tok->encode("Hello, world!"), (Ids{15496, 11, 995, 0}));
  EXPECT_EQ(tok->encode(""), Ids{});
}

TEST_F(Gpt2, InvalidUtf8IsAFormatErrorWithOffset) {
  try {
    tok->encode(std::string("abc\xe2\x82"));
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("byte offset 3"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace metalm
