#include <gtest/gtest.h>

#include "metalm/core/file.hpp"
#include "metalm/data/bpe_trainer.hpp"
#include "metalm/data/corpus.hpp"
#include "metalm/data/tokenizer.hpp"
#include "test_paths.hpp"

namespace metalm {
namespace {

std::vector<std::string> training_texts() {
  std::vector<std::string> texts;
  for (const auto& d : read_corpus({test::fixture("gpt2_stress.txt")}, "text")) texts.push_back(d.text);
  std::string cats;
  for (int i = 0; i < 20; ++i) cats += "the cat sat on the mat; the cat ate the rat. ";
  texts.push_back(cats);
  return texts;
}

TEST(BpeTrainer, LearnsTheRequestedVocabulary) {
  const auto bpe = train_bpe(training_texts(), 400);
  EXPECT_EQ(bpe.tokens.size(), 400u);
  EXPECT_EQ(bpe.eot_id, 399);
  EXPECT_GE(bpe.merges.size(), 400u - 257u);
}

TEST(BpeTrainer, FirstMergeIsTheMostFrequentPair) {
  const auto bpe = train_bpe({"abababab ab", "xy"}, 258);  // one merge
  ASSERT_EQ(bpe.merges.size(), 1u);
  EXPECT_EQ(bpe.tokens[bpe.merges[0].first] + bpe.tokens[bpe.merges[0].second], "ab");
}

TEST(BpeTrainer, OutputLoadsAndRoundTrips) {
  const std::string dir = test::temp_dir("bpe_trainer");
  write_bpe_files(train_bpe(training_texts(), 400), dir);
  const auto tok = make_tokenizer("bpe:" + dir);
  EXPECT_EQ(tok->vocab_size(), 400);
  EXPECT_EQ(tok->eot_id(), 399);
  const std::string text = read_file(test::fixture("gpt2_stress.txt"));
  const auto ids = tok->encode(text);
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_LT(ids.size(), text.size() * 3 / 4);  // the merges compress their own training text
  EXPECT_EQ(tok->encode("the cat").size(), 2u);  // "the" and " cat" were learned
}

TEST(BpeTrainer, IsDeterministic) {
  const std::string a = test::temp_dir("bpe_det_a"), b = test::temp_dir("bpe_det_b");
  write_bpe_files(train_bpe(training_texts(), 350), a);
  write_bpe_files(train_bpe(training_texts(), 350), b);
  EXPECT_EQ(read_file(a + "/vocab.bpe"), read_file(b + "/vocab.bpe"));
  EXPECT_EQ(read_file(a + "/encoder.json"), read_file(b + "/encoder.json"));
}

}  // namespace
}  // namespace metalm
