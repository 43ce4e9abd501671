// The CLI's text form of token ids (what `metalm tokenize` writes and
// `eval`/`analyze --ids` and `tokenize --decode` read): whitespace-separated
// decimal ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace metalm::cli {

// Parses `text` (read from `origin`, named in errors); throws FormatError
// naming the word and its byte offset when a word is not a decimal id.
std::vector<int64_t> parse_token_ids(const std::string& text, const std::string& origin);

// The ids of the file at `path` (an `--ids` input), each checked to be below
// `vocab`, the model's vocabulary: FormatError naming the file for a file
// without ids or an id outside [0, vocab).
std::vector<int64_t> read_token_ids(const std::string& path, int64_t vocab);

}  // namespace metalm::cli
