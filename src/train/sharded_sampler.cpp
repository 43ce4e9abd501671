#include "metalm/train/sharded_sampler.hpp"

#include "metalm/core/error.hpp"

namespace metalm {

ShardedWindowSampler::ShardedWindowSampler(const TokenDataset& data, int64_t batch_per_rank, int64_t seq_len,
                                           uint64_t seed, int rank, int world_size)
    : global_(data, batch_per_rank * world_size, seq_len, seed), batch_(batch_per_rank), rank_(rank), world_(world_size) {
  if (world_size < 1 || rank < 0 || rank >= world_size)
    throw ConfigError("sharded sampler: rank " + std::to_string(rank) + " is not in [0, world size " +
                      std::to_string(world_size) + ")");
}

Batch ShardedWindowSampler::next() {
  Batch all = global_.next();  // [world·B, T]
  if (world_ == 1) return all;
  const int64_t from = static_cast<int64_t>(rank_) * batch_;
  // Copies, so a rank holds only its own [B, T] rows.
  return {all.inputs.narrow(0, from, batch_).clone(), all.targets.narrow(0, from, batch_).clone()};
}

void ShardedWindowSampler::restore(const nlohmann::json& s) {
  if (s.is_object() && s.contains("batch") && s.at("batch").is_number_integer()) {
    const int64_t saved = s.at("batch").get<int64_t>();
    if (saved != global_batch()) {
      std::string hint;
      if (saved % world_ == 0)
        hint = ": set train.batch_size = " + std::to_string(saved / world_) + " to resume with " +
               std::to_string(world_) + " ranks";
      else
        hint = ": " + std::to_string(saved) + " windows cannot be split evenly over " + std::to_string(world_) +
               " ranks; resume with a world size that divides it";
      throw ConfigError("resume: the checkpoint's global micro-batch is " + std::to_string(saved) +
                        " windows but this run has WORLD_SIZE " + std::to_string(world_) + " x train.batch_size " +
                        std::to_string(batch_) + " = " + std::to_string(global_batch()) + hint);
    }
  }
  global_.restore(s);
}

std::vector<int64_t> rank_share(int64_t n, int rank, int world_size) {
  std::vector<int64_t> out;
  for (int64_t i = rank; i < n; i += world_size) out.push_back(i);
  return out;
}

}  // namespace metalm
