#include "metalm/train/distributed.hpp"

// libtorch's ProcessGroupGloo.hpp is empty unless this is defined; Debian's
// libtorch_cpu.so is built with Gloo and exports the class, and libgloo-dev
// supplies the gloo headers it includes.
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif
#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#ifdef USE_C10D_NCCL  // libtorch built with CUDA and NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <glog/logging.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <limits>

#include "metalm/core/error.hpp"

namespace metalm {

namespace {

using Clock = std::chrono::steady_clock;

std::string env_string(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? "" : v;
}

// A launch variable: its value in `given`, else in the environment; "" when
// neither sets it.
std::string launch_string(const std::map<std::string, std::string>& given, const char* name) {
  const auto it = given.find(name);
  return it != given.end() ? it->second : env_string(name);
}

// An integer launch variable, or `fallback` when unset or empty.
int launch_int(const std::map<std::string, std::string>& given, const char* name, int fallback) {
  const std::string v = launch_string(given, name);
  if (v.empty()) return fallback;
  errno = 0;
  char* end = nullptr;
  const long x = std::strtol(v.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || x < std::numeric_limits<int>::min() || x > std::numeric_limits<int>::max())
    throw ConfigError(std::string(name) + " = \"" + v + "\": expected an integer");
  return static_cast<int>(x);
}

// The first line of an exception's message (c10 errors append backtraces).
std::string first_line(const std::exception& e) {
  const auto* c10e = dynamic_cast<const c10::Error*>(&e);
  std::string s = c10e != nullptr ? c10e->what_without_backtrace() : e.what();
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

std::chrono::milliseconds to_ms(double seconds) {
  return std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000.0));
}

// "10 s", "0.5 s": a timeout as the user wrote it.
std::string seconds_text(double seconds) { return fmt::format("{:g} s", seconds); }

// While alive, libtorch's own glog lines (c10d logs every failed connect
// attempt) are not printed: a failure surfaces once, as metalm's error, which
// carries libtorch's message.
class QuietLibtorchLog {
 public:
  QuietLibtorchLog() : saved_(FLAGS_minloglevel) { FLAGS_minloglevel = google::GLOG_FATAL; }
  ~QuietLibtorchLog() { FLAGS_minloglevel = saved_; }
  QuietLibtorchLog(const QuietLibtorchLog&) = delete;
  QuietLibtorchLog& operator=(const QuietLibtorchLog&) = delete;

 private:
  int32_t saved_;
};

}  // namespace

DistLaunch dist_launch_from_env(const std::map<std::string, std::string>& given) {
  DistLaunch d;
  d.world_size = launch_int(given, "WORLD_SIZE", 1);
  d.rank = launch_int(given, "RANK", 0);
  d.local_rank = launch_int(given, "LOCAL_RANK", d.rank);
  if (d.world_size < 1)
    throw ConfigError("WORLD_SIZE = " + std::to_string(d.world_size) + ": must be at least 1");
  if (d.rank < 0 || d.rank >= d.world_size)
    throw ConfigError("RANK = " + std::to_string(d.rank) + ": must be in [0, WORLD_SIZE = " +
                      std::to_string(d.world_size) + ")");
  if (d.local_rank < 0) throw ConfigError("LOCAL_RANK = " + std::to_string(d.local_rank) + ": must not be negative");
  if (!d.distributed()) return d;

  d.master_addr = launch_string(given, "MASTER_ADDR");
  if (d.master_addr.empty())
    throw ConfigError("MASTER_ADDR is not set: a world of " + std::to_string(d.world_size) +
                      " ranks needs the address of rank 0 (or --dist-master-addr)");
  const int port_fallback = -1;
  d.master_port = launch_int(given, "MASTER_PORT", port_fallback);
  if (d.master_port == port_fallback)
    throw ConfigError("MASTER_PORT is not set: a world of " + std::to_string(d.world_size) +
                      " ranks needs the port rank 0 listens on (or --dist-master-port)");
  if (d.master_port < 1 || d.master_port > 65535)
    throw ConfigError("MASTER_PORT = " + std::to_string(d.master_port) + ": must be in [1, 65535]");
  return d;
}

struct DistributedContext::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroup> group;  // Gloo on the CPU, NCCL on CUDA
  int64_t checks = 0;  // sequence number of check_same calls
};

DistributedContext::DistributedContext(const DistLaunch& launch, const DistConfig& config, c10::Device device)
    : launch_(launch), config_(config), device_(device) {
  if (!distributed()) return;
#ifndef USE_C10D_NCCL
  if (device_.is_cuda())
    throw ConfigError("data-parallel training on cuda needs libtorch's NCCL backend, and this libtorch was built "
                      "without it (WORLD_SIZE = " + std::to_string(launch_.world_size) + ")");
#endif
  impl_ = std::make_unique<Impl>();
  const std::string where = "MASTER_ADDR=" + launch_.master_addr + " MASTER_PORT=" +
                            std::to_string(launch_.master_port);
  const auto timeout = to_ms(config_.timeout_s);

  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(launch_.master_port);
  so.isServer = is_main();
  so.numWorkers = static_cast<std::size_t>(launch_.world_size);
  so.waitWorkers = false;  // the group's full-mesh connect below waits, with a clearer failure
  so.timeout = timeout;
  const QuietLibtorchLog quiet;
  try {
    impl_->store = c10::make_intrusive<c10d::TCPStore>(launch_.master_addr, so);
  } catch (const std::exception& e) {
    if (is_main())
      throw IoError("rank 0 could not listen on MASTER_PORT=" + std::to_string(launch_.master_port) +
                    " (is the port in use?): " + first_line(e));
    throw IoError("rank " + std::to_string(rank()) + " could not reach the master at " + where + " within " +
                  seconds_text(config_.timeout_s) + " (dist.timeout_s): " + first_line(e));
  }

  // Catch inconsistent launches before the mesh, which would only time out.
  auto& store = *impl_->store;
  try {
    const std::string ws = std::to_string(world_size());
    if (is_main()) store.set("metalm/world_size", std::vector<uint8_t>(ws.begin(), ws.end()));
    const auto got = store.get("metalm/world_size");
    const std::string master_ws(got.begin(), got.end());
    if (master_ws != ws)
      throw ConfigError("WORLD_SIZE = " + ws + " on rank " + std::to_string(rank()) + " but " + master_ws +
                        " on rank 0: every rank must be launched with the same WORLD_SIZE");
    if (store.add("metalm/rank/" + std::to_string(rank()), 1) != 1)
      throw ConfigError("RANK = " + std::to_string(rank()) + " is used by two processes: each rank in [0, " + ws +
                        ") must be launched exactly once");
    store.add("metalm/joined", 1);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw IoError("rendezvous at " + where + " failed on rank " + std::to_string(rank()) + ": " + first_line(e));
  }

#ifdef USE_C10D_NCCL
  if (device_.is_cuda()) {
    auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
    nccl_options->timeout = timeout;
    try {
      impl_->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, rank(), world_size(), nccl_options);
    } catch (const std::exception& e) {
      throw IoError("NCCL process group at " + where + " failed on rank " + std::to_string(rank()) + ": " +
                    first_line(e));
    }
    spdlog::info("distributed: rank {} of {} (local rank {}), master {}:{}, NCCL", rank(), world_size(),
                 launch_.local_rank, launch_.master_addr, launch_.master_port);
    return;
  }
#endif
  auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
  try {
    // GLOO_SOCKET_IFNAME picks the network interface as in PyTorch; a
    // loopback master means a one-machine world, which stays on loopback.
    const std::string ifname = env_string("GLOO_SOCKET_IFNAME");
    if (!ifname.empty())
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (is_loopback(launch_.master_addr))
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  } catch (const std::exception& e) {
    throw IoError("GLOO_SOCKET_IFNAME / host name: cannot create a Gloo network device: " + first_line(e));
  }
  try {
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, rank(), world_size(), gloo_options);
  } catch (const std::exception& e) {
    int64_t joined = -1;
    try {
      joined = store.add("metalm/joined", 0);
    } catch (const std::exception&) {
    }
    throw IoError("rendezvous at " + where + ": only " + std::to_string(joined) + " of WORLD_SIZE=" +
                  std::to_string(world_size()) + " ranks joined within " + seconds_text(config_.timeout_s) +
                  " (dist.timeout_s): " + first_line(e));
  }
  spdlog::info("distributed: rank {} of {} (local rank {}), master {}:{}, Gloo", rank(), world_size(),
               launch_.local_rank, launch_.master_addr, launch_.master_port);
}

DistributedContext::~DistributedContext() = default;

void DistributedContext::run(const char* what, const std::function<void()>& collective) {
  try {
    collective();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw IoError(std::string("distributed ") + what + " failed on rank " + std::to_string(rank()) +
                  ": another rank died or did not answer within dist.timeout_s = " +
                  seconds_text(config_.timeout_s) + " (" + first_line(e) + ")");
  }
}

void DistributedContext::broadcast(const std::vector<at::Tensor>& tensors) {
  if (!distributed() || tensors.empty()) return;
  // Gloo broadcasts tensors of one shape per call: send one flat buffer per dtype.
  at::NoGradGuard no_grad;
  std::vector<at::ScalarType> dtypes;
  for (const auto& t : tensors)
    if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end()) dtypes.push_back(t.scalar_type());
  for (const auto dtype : dtypes) {
    std::vector<at::Tensor> group;
    for (const auto& t : tensors)
      if (t.scalar_type() == dtype) group.push_back(t.reshape({-1}));
    std::vector<at::Tensor> flat{at::cat(group)};  // [sum of numels]
    run("broadcast", [&] { impl_->group->broadcast(flat)->wait(); });
    int64_t offset = 0;
    for (const auto& t : tensors) {
      if (t.scalar_type() != dtype) continue;
      t.copy_(flat[0].narrow(0, offset, t.numel()).view_as(t));
      offset += t.numel();
    }
  }
}

void DistributedContext::build_buckets(const std::vector<at::Tensor>& params) {
  buckets_.clear();
  bucket_signature_.clear();
  const double cap = config_.bucket_mb * 1024.0 * 1024.0;
  double bytes = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(params.size()); ++i) {
    const auto& p = params[i];
    bucket_signature_.push_back(p.numel());
    bucket_signature_.push_back(static_cast<int64_t>(p.scalar_type()));
    const double size = static_cast<double>(p.numel() * p.element_size());
    const bool new_bucket = buckets_.empty() || bytes + size > cap ||
                            params[buckets_.back().params.front()].scalar_type() != p.scalar_type();
    if (new_bucket) {
      buckets_.push_back({});
      bytes = 0;
    }
    buckets_.back().params.push_back(i);
    bytes += size;
  }
  for (auto& b : buckets_) {
    int64_t n = 0;
    for (int64_t i : b.params) n += params[i].numel();
    b.flat = at::empty({n}, params[b.params.front()].options().requires_grad(false));
  }
}

void DistributedContext::allreduce_gradients(const std::vector<at::Tensor>& params) {
  if (!distributed()) return;
  const auto start = Clock::now();
  std::vector<int64_t> signature;
  for (const auto& p : params) {
    signature.push_back(p.numel());
    signature.push_back(static_cast<int64_t>(p.scalar_type()));
  }
  if (signature != bucket_signature_) build_buckets(params);

  at::NoGradGuard no_grad;
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  std::vector<std::vector<at::Tensor>> inputs(buckets_.size());
  run("gradient allreduce", [&] {
    // Every bucket in flight at once: Gloo's worker threads overlap them.
    for (std::size_t b = 0; b < buckets_.size(); ++b) {
      auto& bucket = buckets_[b];
      int64_t offset = 0;
      for (int64_t i : bucket.params) {
        const auto& g = params[i].grad();
        const int64_t n = params[i].numel();
        auto slot = bucket.flat.narrow(0, offset, n);
        if (g.defined())
          slot.copy_(g.reshape({-1}));
        else
          slot.zero_();
        offset += n;
      }
      inputs[b] = {bucket.flat};
      works.push_back(impl_->group->allreduce(inputs[b]));
    }
    for (auto& w : works) w->wait();
  });
  const double inv_world = 1.0 / static_cast<double>(world_size());
  for (auto& bucket : buckets_) {
    bucket.flat.mul_(inv_world);
    int64_t offset = 0;
    for (int64_t i : bucket.params) {
      auto p = params[i];
      const int64_t n = p.numel();
      auto avg = bucket.flat.narrow(0, offset, n).view_as(p);
      if (p.grad().defined())
        p.mutable_grad().copy_(avg);
      else
        p.mutable_grad() = avg.clone();
      offset += n;
    }
  }
  allreduce_last_s_ = std::chrono::duration<double>(Clock::now() - start).count();
  allreduce_total_s_ += allreduce_last_s_;
}

void DistributedContext::allreduce_sum(std::vector<double>& values) {
  if (!distributed() || values.empty()) return;
  // NCCL reduces device tensors only; Gloo takes them on the CPU.
  auto t = at::from_blob(values.data(), {static_cast<int64_t>(values.size())}, at::kDouble).to(device_, true, true);
  allreduce_sum(t);
  t = t.cpu();
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), values.begin());
}

void DistributedContext::allreduce_mean_flat(const at::Tensor& flat) {
  if (!distributed()) return;
  if (flat.dim() != 1 || !flat.is_contiguous())
    throw ShapeError("allreduce_mean_flat: expected a contiguous 1-d tensor");
  const auto start = Clock::now();
  at::NoGradGuard no_grad;
  // Slices of about bucket_mb, all in flight at once (Gloo's worker threads
  // overlap them); no copy in or out.
  const int64_t per = std::max<int64_t>(
      1, static_cast<int64_t>(config_.bucket_mb * 1024.0 * 1024.0 / static_cast<double>(flat.element_size())));
  std::vector<std::vector<at::Tensor>> inputs;
  for (int64_t begin = 0; begin < flat.numel(); begin += per)
    inputs.push_back({flat.narrow(0, begin, std::min(per, flat.numel() - begin))});
  std::vector<c10::intrusive_ptr<c10d::Work>> works;
  run("gradient allreduce", [&] {
    for (auto& in : inputs) works.push_back(impl_->group->allreduce(in));
    for (auto& w : works) w->wait();
  });
  flat.mul_(1.0 / static_cast<double>(world_size()));
  allreduce_last_s_ = std::chrono::duration<double>(Clock::now() - start).count();
  allreduce_total_s_ += allreduce_last_s_;
}

void DistributedContext::allreduce_sum(at::Tensor& tensor) {
  if (!distributed()) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> in{tensor.is_contiguous() ? tensor : tensor.contiguous()};
  run("allreduce", [&] { impl_->group->allreduce(in)->wait(); });
  if (!in[0].is_same(tensor)) tensor.copy_(in[0]);
}

void DistributedContext::check_same(const std::string& what, const std::string& value) {
  if (!distributed()) return;
  const std::string key = "metalm/check/" + std::to_string(impl_->checks++);
  auto& store = *impl_->store;
  run("consistency check", [&] {
    if (is_main()) {
      store.set(key, std::vector<uint8_t>(value.begin(), value.end()));
      for (int r = 1; r < world_size(); ++r) {
        const auto got = store.get(key + "/" + std::to_string(r));
        if (got.empty() || got[0] != '1')
          throw ConfigError(what + " differs between rank 0 and rank " + std::to_string(r) +
                            ": every rank must run the same configuration");
      }
    } else {
      const auto got = store.get(key);
      const bool same = std::string(got.begin(), got.end()) == value;
      const std::string verdict = same ? "1" : "0";
      store.set(key + "/" + std::to_string(rank()), std::vector<uint8_t>(verdict.begin(), verdict.end()));
      if (!same)
        throw ConfigError(what + " differs between rank 0 and rank " + std::to_string(rank()) +
                          ": every rank must run the same configuration");
    }
  });
}

void DistributedContext::barrier() {
  if (!distributed()) return;
  run("barrier", [&] { impl_->group->barrier()->wait(); });
}

}  // namespace metalm
