// Learns a byte-level BPE (GPT-2 style) from documents: GPT-2's
// pre-tokenisation, then merges of the most frequent adjacent pair, counted
// over unique pre-token words weighted by their frequency and updated
// incrementally (only the words holding the merged pair are revisited).
// Deterministic: ties go to the pair whose (left id, right id) is smallest.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace metalm {

struct BpeTrainResult {
  std::vector<std::string> tokens;                   // id -> bytes; the last id is end-of-text
  std::vector<std::pair<int32_t, int32_t>> merges;   // in rank order
  int64_t eot_id = 0;
};

// vocab_size counts the 256 byte tokens, the merges and end-of-text, so it
// must be at least 257. Stops early (with fewer tokens) when no pair is left.
BpeTrainResult train_bpe(const std::vector<std::string>& texts, int64_t vocab_size);

// Writes DIR/encoder.json and DIR/vocab.bpe (GPT-2's format; loadable as
// bpe:DIR) as one directory, atomically (AtomicDir, core/atomic_file.hpp);
// an existing DIR is replaced as a whole.
void write_bpe_files(const BpeTrainResult& bpe, const std::string& dir);

}  // namespace metalm
