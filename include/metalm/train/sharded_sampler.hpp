// Training windows for one rank of a data-parallel world.
//
// The global micro-batch is drawn from ONE seeded stream: a
// RandomWindowSampler of world × B windows (window k of the run is a pure
// function of (seed, k)), and rank r keeps rows [r·B, (r+1)·B). The union of
// the ranks' windows is therefore exactly the micro-batch a single process
// with batch world × B draws, the ranks' windows are disjoint, and every rank
// holds the same sampler state (a batch counter). A world of one is a plain
// RandomWindowSampler.
//
// Resuming re-splits the same global stream: a checkpoint can be resumed with
// another world size as long as world × B (the global micro-batch) is
// unchanged; otherwise restore() refuses with the batch size that would work.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>

#include "metalm/data/token_dataset.hpp"

namespace metalm {

class ShardedWindowSampler {
 public:
  ShardedWindowSampler(const TokenDataset& data, int64_t batch_per_rank, int64_t seq_len, uint64_t seed, int rank,
                       int world_size);
  // int64 [B, T] inputs and targets: this rank's rows of the next global micro-batch.
  Batch next();
  // The global stream's state, the same on every rank (a random_window state).
  nlohmann::json state() const { return global_.state(); }
  // Accepts a state saved by any world size with the same global micro-batch.
  void restore(const nlohmann::json& state);

  int64_t global_batch() const { return batch_ * world_; }

 private:
  RandomWindowSampler global_;
  int64_t batch_;
  int rank_, world_;
};

// Indices i in [0, n) with i % world_size == rank: a rank's share of a fixed
// list (evaluation batches), so that the ranks' shares partition the list.
std::vector<int64_t> rank_share(int64_t n, int rank, int world_size);

}  // namespace metalm
