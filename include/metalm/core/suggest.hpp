// "Did you mean ...?" for a mistyped config key or command name.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace metalm {

// Levenshtein distance (insertions, deletions, substitutions).
std::size_t edit_distance(const std::string& a, const std::string& b);

// The candidate closest to `word` within a small distance (at most
// max(2, |word| / 3)), or "" when none is that close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace metalm
