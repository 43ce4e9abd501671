// The pairings of the controls of docs/design.md 5.5: which other position of
// a batch a position is compared with. Every pairing is a single cycle over a
// set of rows, drawn counter-based from (seed, stream, row), so it can be
// recomputed outside metalm and does not depend on the order of any stream.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace metalm {

inline constexpr uint64_t kPermutationKey = 0x5045524D;  // "PERM", apart from other draws
// Streams of the pairings (docs/design.md 5.5).
inline constexpr uint64_t kShuffledStream = 1;
inline constexpr uint64_t kBigramStream = 2;
inline constexpr uint64_t kPermutedStream = 3;  // and 3 + p for the p-th permutation of the null band

// rows: [n] int64 flat rows r = i·T + t. Orders them by mix(seed, kPermutationKey,
// stream, r) (ties by r) into ρ_0 … ρ_{n−1} and returns [n] int64: for each
// rows[i], the INDEX into `rows` of its partner π(rows[i]) = ρ_{(j+1) mod n}
// where rows[i] = ρ_j. One row is its own partner.
at::Tensor cycle_partners(const at::Tensor& rows, uint64_t seed, uint64_t stream);

// The shuffled-target pairing: [total] int64 flat rows, source[r] = π(r) for
// the analysed `rows` (π of kShuffledStream over all of them), r elsewhere.
at::Tensor shuffled_sources(const at::Tensor& rows, int64_t total, uint64_t seed);

// The bigram pairing: like shuffled_sources, but π of kBigramStream runs
// within each group of analysed rows whose current token (`current`, [n]
// int64, aligned with `rows`) is the same; a row alone in its group takes its
// shuffled partner. `fallback` ([n] double) is set to 1 for those rows, 0 for
// the others. An undefined `current` makes every row fall back.
at::Tensor bigram_sources(const at::Tensor& rows, const at::Tensor& current, int64_t total, uint64_t seed,
                          at::Tensor& fallback);

}  // namespace metalm
