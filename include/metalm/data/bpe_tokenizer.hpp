// Byte-level BPE in GPT-2's two-file format (encoder.json: token -> id, with
// tokens spelled through bytes_to_unicode; vocab.bpe: merges in rank order).
// Encoding follows tiktoken exactly: GPT-2 pre-tokenisation, then per piece
// (a piece that is itself a token is taken whole) repeatedly join the
// adjacent pair whose concatenation is the lowest-ranked token, leftmost
// first. Pieces' ids are cached.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "metalm/data/tokenizer.hpp"

namespace metalm {

class BpeTokenizer : public Tokenizer {
 public:
  // `tokens[id]` holds the raw bytes of each id (the end-of-text id's entry is
  // ignored); `merges` are pairs of ids in rank order, each joining into a
  // token of `tokens`. Throws FormatError when a merge's result is missing.
  BpeTokenizer(std::vector<std::string> tokens, const std::vector<std::pair<int32_t, int32_t>>& merges,
               int64_t eot_id, std::string spec);

  // Reads DIR/encoder.json and DIR/vocab.bpe.
  static std::unique_ptr<BpeTokenizer> load(const std::string& dir, const std::string& spec);

  std::vector<int64_t> encode(std::string_view text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  int64_t vocab_size() const override { return static_cast<int64_t>(tokens_.size()); }
  int64_t eot_id() const override { return eot_id_; }
  std::string spec() const override { return spec_; }

  static constexpr const char* kEndOfText = "<|endoftext|>";

 private:
  // Appends the ids of one pre-token; the caller holds cache_mutex_.
  void encode_piece(std::string_view piece, std::vector<int64_t>& out) const;
  void bpe(std::string_view piece, std::vector<int32_t>& out) const;

  std::vector<std::string> tokens_;                            // id -> bytes
  std::unordered_map<std::string_view, int32_t> ids_;         // bytes -> id (views into tokens_)
  std::unordered_map<uint64_t, uint64_t> pairs_;              // (left<<32|right) -> (rank<<32|joined id)
  int32_t byte_ids_[256];
  int64_t eot_id_;
  std::string spec_;

  // Cache of pre-token -> ids; keys are views into cache_keys_ (a deque never
  // moves its strings). Guarded by cache_mutex_ so encode() stays const and
  // thread-safe.
  mutable std::mutex cache_mutex_;
  mutable std::deque<std::string> cache_keys_;
  mutable std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache_;  // (offset, count)
  mutable std::vector<int32_t> cache_ids_;
};

}  // namespace metalm
