// One seeded hash for every reproducible random choice metalm makes (data
// windows, the validation split, per-rank dropout seeds, random targets).
//
// Everything is built on SplitMix64 (Steele, Lea & Flood, "Fast splittable
// pseudorandom number generators", OOPSLA 2014), with all arithmetic modulo
// 2^64:
//
//   finalize(z) = z ^= z >> 30;  z *= 0xBF58476D1CE4E5B9;
//                 z ^= z >> 27;  z *= 0x94D049BB133111EB;
//                 z ^ (z >> 31)
//   splitmix64(x) = finalize(x + 0x9E3779B97F4A7C15)
//
// splitmix64(x) is the value a SplitMix64 generator in state x returns; the
// generator then moves to state x + 0x9E3779B97F4A7C15 (SplitMix64 below).
//
// mix(seed, v1, …, vn) is a pure, counter-based hash of a tuple:
//
//   h = splitmix64(seed);  for each v: h = splitmix64(h ^ v);  return h
//
// where every value is taken modulo 2^64 (negative integers as their two's
// complement). In Python, with M = 2**64 - 1:
//
//   def finalize(z):
//       z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
//       z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
//       return z ^ (z >> 31)
//   def splitmix64(x): return finalize((x + 0x9E3779B97F4A7C15) & M)
//   def mix(seed, *values):
//       h = splitmix64(seed & M)
//       for v in values: h = splitmix64(h ^ (v & M))
//       return h
//
// so a draw keyed by (seed, batch, position), e.g. mix(seed, b, t) % n, is
// reproducible outside metalm without replaying any stream.
#pragma once

#include <cstdint>
#include <type_traits>

namespace metalm {

// The golden-ratio increment of SplitMix64's state.
inline constexpr uint64_t kSplitMix64Gamma = 0x9E3779B97F4A7C15ull;

// SplitMix64's output function (a bijection of 64-bit words).
constexpr uint64_t splitmix64_finalize(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The output of a SplitMix64 generator whose state is x.
constexpr uint64_t splitmix64(uint64_t x) { return splitmix64_finalize(x + kSplitMix64Gamma); }

// mix(seed, values...): the counter-based hash of the header comment.
template <class... Values>
constexpr uint64_t mix(uint64_t seed, Values... values) {
  static_assert((std::is_integral_v<Values> && ...), "mix hashes integers");
  uint64_t h = splitmix64(seed);
  ((h = splitmix64(h ^ static_cast<uint64_t>(values))), ...);
  return h;
}

// A SplitMix64 stream, for sequential draws (a shuffle): next() returns
// splitmix64(state) and advances the state by the gamma. Seeded with 0 it
// yields 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F, …
class SplitMix64 {
 public:
  explicit constexpr SplitMix64(uint64_t seed) : state_(seed) {}
  constexpr uint64_t next() {
    const uint64_t out = splitmix64(state_);
    state_ += kSplitMix64Gamma;
    return out;
  }

 private:
  uint64_t state_;
};

}  // namespace metalm
