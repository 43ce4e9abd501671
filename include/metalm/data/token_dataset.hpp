// A memory-mapped token file (see token_file.hpp) and the samplers that cut
// it into training and evaluation batches.
#pragma once

#include <ATen/core/Tensor.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace metalm {

// The ids of one token file, read in place from memory.
class TokenDataset {
 public:
  // Maps the file (private, read-only) and checks it once: IoError if it is
  // unreadable or not a regular file; FormatError on a bad header, a size
  // that disagrees with it, or an id outside the header's vocabulary, so
  // every later read is in range. The check is one vectorised pass: 100 M
  // uint16 ids open in about 0.1 s on a warm page cache, most of it paging
  // the map in (the max itself takes 16 ms).
  explicit TokenDataset(const std::string& bin_path);
  ~TokenDataset();
  TokenDataset(const TokenDataset&) = delete;
  TokenDataset& operator=(const TokenDataset&) = delete;

  int64_t size() const { return count_; }
  int64_t vocab_size() const { return vocab_size_; }
  // The largest id in the file (-1 when it is empty).
  int64_t max_id() const { return max_id_; }
  // Throws FormatError naming the file unless its vocabulary (header) fits
  // `vocab`, the vocabulary of `whose` (e.g. "the model", "meta.json").
  void check_vocab(int64_t vocab, const std::string& whose) const;
  const std::string& path() const { return path_; }
  // The id at index i (0 <= i < size(), not checked).
  int64_t token(int64_t i) const;
  // int64 [length]; throws ShapeError when the range leaves the file.
  at::Tensor slice(int64_t start, int64_t length) const;
  // Copies ids [start, start + length) into `out` (no bounds check).
  void copy_to(int64_t start, int64_t length, int64_t* out) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  std::size_t map_bytes_ = 0;
  const unsigned char* ids_ = nullptr;
  uint32_t id_bytes_ = 2;
  int64_t vocab_size_ = 0;
  int64_t count_ = 0;
  int64_t max_id_ = -1;
};

struct Batch {
  at::Tensor inputs;   // int64 [B, T]
  at::Tensor targets;  // int64 [B, T], inputs shifted left by one token
};

// B windows of T+1 tokens at uniformly random starts. Window k of the run is
// a pure function of (seed, k) (a counter-based generator), so the state is
// just the batch counter and a restored sampler repeats the exact batches.
class RandomWindowSampler {
 public:
  RandomWindowSampler(const TokenDataset& data, int64_t batch, int64_t seq_len, uint64_t seed);
  Batch next();
  nlohmann::json state() const;
  // Throws ConfigError when the state belongs to another seed or shape.
  void restore(const nlohmann::json& state);

 private:
  const TokenDataset& data_;
  int64_t batch_, seq_len_;
  uint64_t seed_;
  uint64_t step_ = 0;
};

// n_batches batches of `batch` windows spread evenly over the whole file;
// the same windows on every call (the trainer's evaluation set).
std::vector<Batch> fixed_eval_batches(const TokenDataset& data, int64_t n_batches, int64_t batch, int64_t seq_len);

// Batches of a list of ids (an `--ids` or `--text` input): consecutive
// non-overlapping windows of T + 1 ids, T = min(seq_len, ids − 1), `batch`
// windows a batch (the last may hold fewer), at most max_batches batches.
// FormatError naming `origin` for fewer than 2 ids or an id outside
// [0, vocab).
std::vector<Batch> id_batches(const std::vector<int64_t>& ids, int64_t seq_len, int64_t batch, int64_t max_batches,
                              int64_t vocab, const std::string& origin);

}  // namespace metalm
