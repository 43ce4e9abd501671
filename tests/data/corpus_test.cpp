#include <gtest/gtest.h>

#include "metalm/core/error.hpp"
#include "metalm/data/corpus.hpp"
#include "test_paths.hpp"

namespace metalm {
namespace {

TEST(BrownCorpus, StripsTagsMapsQuotesAndPutsOneParagraphPerLine) {
  const auto docs = read_corpus({test::fixture("brown")}, "brown");
  ASSERT_EQ(docs.size(), 2u);  // README and package.json are skipped
  EXPECT_NE(docs[0].name.find("ca01"), std::string::npos);
  EXPECT_EQ(docs[0].text,
            "The Fulton jury said \" no evidence \" . It cost 1/2 dollar .\n"
            "Second paragraph .\n");
  EXPECT_EQ(docs[1].text, "Other file .\n");
}

TEST(BrownCorpus, FileNamesFollowTheCorpusPattern) {
  EXPECT_TRUE(is_brown_file_name("ca01"));
  EXPECT_TRUE(is_brown_file_name("cr09"));
  EXPECT_FALSE(is_brown_file_name("cs01"));
  EXPECT_FALSE(is_brown_file_name("README"));
  EXPECT_FALSE(is_brown_file_name("ca1"));
}

TEST(TextCorpus, EachFileIsOneDocumentReadVerbatim) {
  const auto docs = read_corpus({test::fixture("gpt2_stress.txt"), test::fixture("brown/README")}, "text");
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[1].text, "BROWN CORPUS README: not a text file\n");
}

TEST(Corpus, MissingInputAndUnknownFormatAreClearErrors) {
  EXPECT_THROW(read_corpus({"/no/such/corpus"}, "text"), IoError);
  EXPECT_THROW(read_corpus({test::fixture("brown")}, "xml"), ConfigError);
}

}  // namespace
}  // namespace metalm
