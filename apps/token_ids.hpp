// The CLI's text form of token ids (what `metalm tokenize` writes and
// `eval`/`analyze --ids` and `tokenize --decode` read): whitespace-separated
// decimal ids; and the text inputs (--text, tokenize --input) as ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace metalm {
class Tokenizer;
}

namespace metalm::cli {

// Parses `text` (read from `origin`, named in errors); throws FormatError
// naming the word and its byte offset when a word is not a decimal id, or,
// when `vocab` > 0, an id outside [0, vocab) (`vocab_name`, e.g. "the model's
// vocabulary", says whose), with its byte offset and its number in the text.
std::vector<int64_t> parse_token_ids(const std::string& text, const std::string& origin, int64_t vocab = 0,
                                     const std::string& vocab_name = "");

// The ids of the file at `path` (an `--ids` input: a file or a pipe of at most
// max_input_bytes(InputKind::Text)), each checked to be below `vocab`, the
// model's vocabulary: FormatError naming the file for a file without ids or
// an id outside [0, vocab).
std::vector<int64_t> read_token_ids(const std::string& path, int64_t vocab);

// The ids of `text`, read from `path` (named in errors: its invalid UTF-8),
// encoded by `tok`.
std::vector<int64_t> encode_text(const Tokenizer& tok, const std::string& text, const std::string& path);

// The ids of the text file at `path` (a --text input: a file or a pipe of at
// most max_input_bytes(InputKind::Text)), encoded by `tok`.
std::vector<int64_t> read_text_ids(const Tokenizer& tok, const std::string& path);

}  // namespace metalm::cli
