// The seeded hash against values computed by an independent Python
// implementation of the formulas in metalm/core/hash.hpp (and of the
// hand-written copies it replaced, whose outputs resume and data windows
// depend on).
#include <gtest/gtest.h>

#include <set>

#include "metalm/core/hash.hpp"

namespace metalm {
namespace {

TEST(SplitMix64, StreamFromZeroIsTheReferenceSequence) {
  SplitMix64 rng(0);
  EXPECT_EQ(rng.next(), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(rng.next(), 0x6E789E6AA1B965F4ull);
  EXPECT_EQ(rng.next(), 0x06C45D188009454Full);
}

TEST(SplitMix64, StreamMatchesPython) {
  // The stream the validation split's shuffle draws (src/data/prepare.cpp).
  SplitMix64 rng(1234567);
  for (uint64_t want : {0x599ED017FB08FC85ull, 0x2C73F08458540FA5ull, 0x883EBCE5A3F27C77ull, 0x3FBEF740E9177B3Full,
                        0xE3B8346708CB5ECDull})
    EXPECT_EQ(rng.next(), want);
}

TEST(SplitMix64, FinalizeAndOutputMatchPython) {
  EXPECT_EQ(splitmix64_finalize(0), 0ull);  // the finalizer alone fixes 0; the gamma is what moves it
  EXPECT_EQ(splitmix64_finalize(1), 0x5692161D100B05E5ull);
  EXPECT_EQ(splitmix64_finalize(0xDEADBEEF), 0x4E062702EC929EEAull);
  EXPECT_EQ(splitmix64_finalize(~0ull), 0xB4D055FCF2CBBD7Bull);
  EXPECT_EQ(splitmix64(0), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(splitmix64(42), 0xBDD732262FEB6E95ull);
  EXPECT_EQ(splitmix64(~0ull), 0xE4D971771B652C20ull);
}

TEST(Mix, MatchesPython) {
  static_assert(mix(42, 7) == 0x16062D6C1339E500ull, "mix is usable in constant expressions");
  EXPECT_EQ(mix(42), 0xBDD732262FEB6E95ull);  // no values: splitmix64(seed)
  EXPECT_EQ(mix(42, 7), 0x16062D6C1339E500ull);
  EXPECT_EQ(mix(42, 7, 3), 0xF55E4254D4655539ull);
  EXPECT_EQ(mix(7, -1), 0xA9A96B699DC41760ull);  // negative values as two's complement
  EXPECT_EQ(mix(0, 0, 0, 0), 0x2130748AAAC80268ull);
}

TEST(Mix, IsTheRandomWindowRuleOfTheSampler) {
  // RandomWindowSampler drew splitmix64(splitmix64(seed) ^ k) for window k.
  EXPECT_EQ(mix(42, 7), splitmix64(splitmix64(42) ^ 7));
}

TEST(Mix, DependsOnEveryArgumentAndItsOrder) {
  std::set<uint64_t> seen;
  for (uint64_t seed = 0; seed < 4; ++seed)
    for (int64_t a = 0; a < 8; ++a)
      for (int64_t b = 0; b < 8; ++b) seen.insert(mix(seed, a, b));
  EXPECT_EQ(seen.size(), 4u * 8u * 8u);
  EXPECT_NE(mix(1, 2, 3), mix(1, 3, 2));
  EXPECT_NE(mix(1, 2), mix(1, 2, 0));  // a trailing zero is a different tuple
}

}  // namespace
}  // namespace metalm
