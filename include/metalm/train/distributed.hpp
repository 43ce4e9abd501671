// Data-parallel training over processes and machines with PyTorch's own
// distributed engine: ranks meet through a c10d::TCPStore on the master and
// average gradients with c10d::ProcessGroupGloo allreduce.
//
// The launch (who is rank what, where the master listens) follows torchrun's
// environment variables, so torchrun, scripts/experiments/launch_local.sh and a cluster
// scheduler all start `metalm train` the same way:
//
//   RANK  WORLD_SIZE  LOCAL_RANK  MASTER_ADDR  MASTER_PORT
//
// A world of one needs none of them and does no communication at all.
//
// Two settings structs, one per concern: DistLaunch says who this process is
// (a property of the launch), the config's DistConfig (dist.timeout_s,
// dist.bucket_mb) how the ranks communicate (a property of the experiment).
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"

namespace metalm {

// This process's place in a data-parallel world. The default is a world of
// one, which needs no address.
struct DistLaunch {
  int rank = 0;        // 0 <= rank < world_size
  int world_size = 1;  // number of ranks
  int local_rank = 0;  // rank on this machine (informative)
  std::string master_addr = "127.0.0.1";  // where rank 0 hosts the rendezvous
  int master_port = 29500;

  bool distributed() const { return world_size > 1; }
};

// The launch from torchrun's variables RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR and MASTER_PORT. A value in `given` (keyed by the variable's
// name, e.g. the CLI's --dist-rank as "RANK") wins over the environment.
// Unset: RANK 0, WORLD_SIZE 1, LOCAL_RANK = RANK; a world of more than one
// needs MASTER_ADDR and MASTER_PORT. Throws ConfigError naming the variable
// when a value is malformed or inconsistent (RANK >= WORLD_SIZE, a port out
// of range, a missing address...).
DistLaunch dist_launch_from_env(const std::map<std::string, std::string>& given = {});

// One rank's membership of the process group. Collectives block until every
// rank joins them, so every rank must call them in the same order; a peer
// that dies or stalls turns into an Error (no hang) within timeout_s.
class DistributedContext {
 public:
  // Rendezvous: rank 0 hosts the TCPStore on MASTER_PORT, every rank
  // connects and the Gloo group forms its full mesh, each waiting at most
  // config.timeout_s. Fails fast (IoError naming MASTER_ADDR/MASTER_PORT)
  // when the port is taken or the master is unreachable within the timeout.
  // A world of one does nothing. `device` is where the collectives' tensors
  // live: the CPU uses Gloo, CUDA uses NCCL (a ConfigError where this
  // libtorch has no NCCL).
  DistributedContext(const DistLaunch& launch, const DistConfig& config,
                     c10::Device device = c10::Device(c10::kCPU));
  ~DistributedContext();
  DistributedContext(const DistributedContext&) = delete;
  DistributedContext& operator=(const DistributedContext&) = delete;

  int rank() const { return launch_.rank; }
  int world_size() const { return launch_.world_size; }
  bool is_main() const { return launch_.rank == 0; }
  bool distributed() const { return launch_.distributed(); }
  const DistLaunch& launch() const { return launch_; }
  const DistConfig& config() const { return config_; }

  // Copies rank 0's tensors into every rank's (in place), so all ranks start
  // from the same weights whatever their local initialisation.
  void broadcast(const std::vector<at::Tensor>& tensors);

  // Averages the .grad() of `params` over ranks, in place: the gradients are
  // packed into flat float buffers of about bucket_mb each, one allreduce per
  // bucket (all buckets in flight together), then divided by the world size.
  // A parameter without a gradient on this rank contributes zeros and gets the
  // average. Call once per optimizer step, after the last micro-batch.
  void allreduce_gradients(const std::vector<at::Tensor>& params);
  // The same average over one contiguous 1-d buffer that holds every
  // gradient (FlatAdamW::flat_grads()): reduced in place, in slices of about
  // bucket_mb, without packing.
  void allreduce_mean_flat(const at::Tensor& flat);

  // Sums `values` over ranks, in place (float64), e.g. evaluation loss sums
  // and token counts, so every rank gets the single-process totals.
  void allreduce_sum(std::vector<double>& values);
  // Sums a tensor over ranks, in place.
  void allreduce_sum(at::Tensor& tensor);

  // Every rank passes its own `value`; throws ConfigError naming `what` and
  // both values when any rank disagrees with rank 0 (e.g. a config hash).
  void check_same(const std::string& what, const std::string& value);

  // Returns once every rank has called it.
  void barrier();

  // Wall time spent averaging gradients: cumulative and for the last call.
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

  DistLaunch launch_;
  DistConfig config_;
  c10::Device device_;
  std::unique_ptr<Impl> impl_;
  std::vector<Bucket> buckets_;
  std::vector<int64_t> bucket_signature_;  // numels of the params the buckets were built for
  double allreduce_total_s_ = 0, allreduce_last_s_ = 0;
};

}  // namespace metalm
