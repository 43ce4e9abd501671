// Data-parallel training over processes and machines with PyTorch's own
// distributed engine: ranks meet through a c10d::TCPStore on the master and
// average gradients with c10d::ProcessGroupGloo allreduce.
//
// The launch (who is rank what, where the master listens) follows torchrun's
// environment variables, so torchrun, scripts/launch_local.sh and a cluster
// scheduler all start `metalm train` the same way:
//
//   RANK  WORLD_SIZE  LOCAL_RANK  MASTER_ADDR  MASTER_PORT
//
// A world of one needs none of them and does no communication at all.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace metalm {

struct DistOptions {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  double timeout_s = 60.0;  // rendezvous and every collective
  double bucket_mb = 25.0;  // flat gradient bucket size

  bool distributed() const { return world_size > 1; }
};

// Explicit values (e.g. from --dist-* flags) win over the environment;
// unset ones are read from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
// MASTER_PORT. Throws ConfigError naming the variable (or flag) when a value
// is malformed or inconsistent (rank >= world size, port out of range, a
// world > 1 without MASTER_ADDR/MASTER_PORT...).
struct DistOverrides {
  int rank = -1;        // -1: from RANK (default 0)
  int world_size = -1;  // -1: from WORLD_SIZE (default 1)
  int local_rank = -1;  // -1: from LOCAL_RANK (default: rank)
  std::string master_addr;  // "": from MASTER_ADDR
  int master_port = -1;     // -1: from MASTER_PORT
};
DistOptions dist_options_from_env(const DistOverrides& overrides, double timeout_s, double bucket_mb);

// One rank's membership of the process group. Collectives block until every
// rank joins them, so every rank must call them in the same order; a peer
// that dies or stalls turns into an Error (no hang) within timeout_s.
class DistributedContext {
 public:
  // Rendezvous: rank 0 hosts the TCPStore on MASTER_PORT, every rank
  // connects and the Gloo group forms its full mesh. Fails fast (Error
  // naming MASTER_ADDR/MASTER_PORT) when the port is taken or the master is
  // unreachable within the timeout.
  explicit DistributedContext(const DistOptions& options);
  ~DistributedContext();
  DistributedContext(const DistributedContext&) = delete;
  DistributedContext& operator=(const DistributedContext&) = delete;

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  bool is_main() const { return options_.rank == 0; }
  bool distributed() const { return options_.distributed(); }
  const DistOptions& options() const { return options_; }

  // Copies rank 0's tensors into every rank's (in place), so all ranks start
  // from the same weights whatever their local initialisation.
  void broadcast(const std::vector<at::Tensor>& tensors);

  // Averages the .grad() of `params` over ranks, in place: the gradients are
  // packed into flat float buffers of about bucket_mb each, one allreduce per
  // bucket (all buckets in flight together), then divided by the world size.
  // A parameter without a gradient on this rank contributes zeros and gets the
  // average. Call once per optimizer step, after the last micro-batch.
  void allreduce_gradients(const std::vector<at::Tensor>& params);

  // Sums `values` over ranks, in place (float64), e.g. evaluation loss sums
  // and token counts, so every rank gets the single-process totals.
  void allreduce_sum(std::vector<double>& values);
  // Sums a tensor over ranks, in place.
  void allreduce_sum(at::Tensor& tensor);

  // Every rank passes its own `value`; throws ConfigError naming `what` and
  // both values when any rank disagrees with rank 0 (e.g. a config hash).
  void check_same(const std::string& what, const std::string& value);

  void barrier();

  // Wall time spent in allreduce_gradients: cumulative and for the last call.
  double allreduce_seconds_total() const { return allreduce_total_s_; }
  double allreduce_seconds_last() const { return allreduce_last_s_; }
  // Buckets used by the last allreduce_gradients call.
  int64_t buckets() const { return static_cast<int64_t>(buckets_.size()); }

 private:
  struct Impl;
  struct Bucket {
    std::vector<int64_t> params;  // indices into the params vector
    at::Tensor flat;              // float [sum of numels]
  };
  void build_buckets(const std::vector<at::Tensor>& params);
  void run(const char* what, const std::function<void()>& collective);

  DistOptions options_;
  std::unique_ptr<Impl> impl_;
  std::vector<Bucket> buckets_;
  std::vector<int64_t> bucket_signature_;  // numels of the params the buckets were built for
  double allreduce_total_s_ = 0, allreduce_last_s_ = 0;
};

}  // namespace metalm
