#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "metalm/core/error.hpp"
#include "metalm/data/pretokenizer.hpp"

namespace metalm {
namespace {

std::vector<std::string> pieces(const std::string& text) {
  std::vector<std::string> out;
  gpt2_pretokenize(text, [&](std::string_view p) { out.emplace_back(p); });
  return out;
}

using V = std::vector<std::string>;

TEST(Gpt2Pretokenizer, WordsTakeTheirLeadingSpace) {
  EXPECT_EQ(pieces("Hello world"), (V{"Hello", " world"}));
}

TEST(Gpt2Pretokenizer, ContractionsSplitOffLowerCaseOnly) {
  EXPECT_EQ(pieces("don't we'll I'M"), (V{"don", "'t", " we", "'ll", " I", "'", "M"}));
  EXPECT_EQ(pieces("'sometimes"), (V{"'s", "ometimes"}));
}

TEST(Gpt2Pretokenizer, WhitespaceRunLeavesItsLastSpaceToTheNextWord) {
  EXPECT_EQ(pieces("a   b"), (V{"a", "  ", " b"}));
  EXPECT_EQ(pieces("a\n\nb"), (V{"a", "\n", "\n", "b"}));
  EXPECT_EQ(pieces("a \n b"), (V{"a", " \n", " b"}));
}

TEST(Gpt2Pretokenizer, TrailingWhitespaceIsOnePiece) {
  EXPECT_EQ(pieces("end   "), (V{"end", "   "}));
  EXPECT_EQ(pieces("x\n \n"), (V{"x", "\n \n"}));
}

TEST(Gpt2Pretokenizer, NumbersLettersAndSymbolsAreSeparateRuns) {
  EXPECT_EQ(pieces("abc123def 45!?"), (V{"abc", "123", "def", " 45", "!?"}));
  EXPECT_EQ(pieces("x += 1;"), (V{"x", " +=", " 1", ";"}));
}

TEST(Gpt2Pretokenizer, UsesUnicodeLetterAndNumberClasses) {
  // CJK ideographs are letters; Arabic-Indic and Roman numerals are numbers;
  // a combining acute (Mn) is neither, so it ends the letter run.
  EXPECT_EQ(pieces("\xe4\xb8\xad\xe6\x96\x87 \xd9\xa3\xe2\x85\xab"), (V{"\xe4\xb8\xad\xe6\x96\x87", " \xd9\xa3\xe2\x85\xab"}));
  EXPECT_EQ(pieces("e\xcc\x81t\xc3\xa9"), (V{"e", "\xcc\x81", "t\xc3\xa9"}));
}

TEST(Gpt2Pretokenizer, NoBreakSpaceIsWhitespaceButNotTheOptionalLeadingSpace) {
  EXPECT_EQ(pieces("a\xc2\xa0" "b"), (V{"a", "\xc2\xa0", "b"}));
}

TEST(Gpt2Pretokenizer, PiecesTileTheText) {
  const std::string text = "  It's 2024!\t\tOK?  \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9 done \n";
  std::string joined;
  for (const auto& p : pieces(text)) joined += p;
  EXPECT_EQ(joined, text);
}

TEST(Gpt2Pretokenizer, InvalidUtf8NamesTheByteOffset) {
  try {
    pieces(std::string("ok \xff bad"));
    FAIL() << "expected FormatError";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("byte offset 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(pieces(std::string("\xe4\xb8")), FormatError);          // truncated
  EXPECT_THROW(pieces(std::string("\xc0\xaf")), FormatError);          // overlong
  EXPECT_THROW(pieces(std::string("\xed\xa0\x80")), FormatError);      // surrogate
}

}  // namespace
}  // namespace metalm
