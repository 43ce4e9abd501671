#include "metalm/data/token_dataset.hpp"

#include <sys/mman.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/hash.hpp"
#include "metalm/data/token_file.hpp"

namespace metalm {
namespace {

void check_shape(const TokenDataset& data, int64_t batch, int64_t seq_len) {
  if (batch <= 0 || seq_len <= 0)
    throw ShapeError("sampler: batch and seq_len must be positive, got " + std::to_string(batch) + " and " +
                     std::to_string(seq_len));
  if (seq_len >= data.size())
    throw ShapeError(data.path() + ": " + std::to_string(data.size()) + " tokens, a window needs seq_len + 1 (seq_len = " +
                     std::to_string(seq_len) + ")");
  // seq_len < size, so seq_len + 1 cannot overflow; the batch tensor's size can.
  if (batch > std::numeric_limits<int64_t>::max() / (seq_len + 1))
    throw ShapeError("sampler: a batch of " + std::to_string(batch) + " windows of " + std::to_string(seq_len) +
                     " + 1 tokens does not fit in a 64-bit size");
}

// Fills a batch from window start positions: inputs [B, T], targets [B, T].
Batch make_batch(const TokenDataset& data, const std::vector<int64_t>& starts, int64_t seq_len) {
  const auto b = static_cast<int64_t>(starts.size());
  at::Tensor windows = at::empty({b, seq_len + 1}, at::kLong);  // [B, T+1]
  int64_t* p = windows.data_ptr<int64_t>();
  for (int64_t i = 0; i < b; ++i) data.copy_to(starts[i], seq_len + 1, p + i * (seq_len + 1));
  return {windows.narrow(1, 0, seq_len).contiguous(), windows.narrow(1, 1, seq_len).contiguous()};
}

int64_t state_int(const nlohmann::json& s, const char* key, const char* who) {
  if (!s.is_object() || !s.contains(key) || !s.at(key).is_number_integer())
    throw ConfigError(std::string(who) + " state: missing integer '" + key + "'");
  return s.at(key).get<int64_t>();
}

}  // namespace

namespace {

// The largest of n little-endian ids of type T at p (the loop vectorises).
template <class T>
int64_t max_of(const unsigned char* p, int64_t n) {
  T m = 0;
  for (int64_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, p + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
    m = v > m ? v : m;
  }
  return n > 0 ? static_cast<int64_t>(m) : -1;
}

}  // namespace

TokenDataset::TokenDataset(const std::string& bin_path) : path_(bin_path) {
  const InputFile file(bin_path);
  map_bytes_ = static_cast<std::size_t>(file.size());
  if (map_bytes_ > 0) {
    // Private: the process sees the file as it was mapped, and never writes it.
    map_ = ::mmap(nullptr, map_bytes_, PROT_READ, MAP_PRIVATE, file.fd(), 0);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      throw IoError("cannot map " + bin_path + ": " + std::strerror(errno));
    }
  }
  try {
    // A file that shrank between fstat and mmap would fault on first read.
    if (file.current_size() != file.size())
      throw IoError(bin_path + ": changed size while being opened (is another process still writing it?)");
    const auto* bytes = static_cast<const unsigned char*>(map_);
    const TokenFileHeader h = parse_token_file_header(bytes, map_bytes_, bin_path);
    id_bytes_ = h.id_bytes;
    vocab_size_ = h.vocab_size;
    count_ = h.count;
    ids_ = bytes + TokenFileHeader::kBytes;
    max_id_ = id_bytes_ == 2 ? max_of<uint16_t>(ids_, count_) : max_of<uint32_t>(ids_, count_);
    if (max_id_ >= vocab_size_) {
      int64_t at = 0;
      while (token(at) != max_id_) ++at;
      throw FormatError(bin_path + ": token id " + std::to_string(max_id_) + " at position " + std::to_string(at) +
                        " is outside the file's vocabulary of " + std::to_string(vocab_size_) +
                        " (corrupt file; re-run `metalm prepare`)");
    }
  } catch (...) {
    if (map_) ::munmap(map_, map_bytes_);
    map_ = nullptr;
    throw;
  }
}

void TokenDataset::check_vocab(int64_t vocab, const std::string& whose) const {
  if (vocab_size_ > vocab)
    throw FormatError(path_ + ": vocabulary of " + std::to_string(vocab_size_) + " ids (largest id in the file " +
                      std::to_string(max_id_) + ") exceeds " + whose + "'s " + std::to_string(vocab));
}

TokenDataset::~TokenDataset() {
  if (map_) ::munmap(map_, map_bytes_);
}

int64_t TokenDataset::token(int64_t i) const {
  if (i < 0 || i >= count_)
    throw ShapeError(path_ + ": token index " + std::to_string(i) + " outside [0, " + std::to_string(count_) + ")");
  int64_t v;
  copy_to(i, 1, &v);
  return v;
}

void TokenDataset::copy_to(int64_t start, int64_t length, int64_t* out) const {
  // Files are little-endian, like every machine metalm targets.
  if (id_bytes_ == 2) {
    const unsigned char* p = ids_ + start * 2;
    for (int64_t i = 0; i < length; ++i) {
      uint16_t v;
      std::memcpy(&v, p + i * 2, 2);
      out[i] = v;
    }
  } else {
    const unsigned char* p = ids_ + start * 4;
    for (int64_t i = 0; i < length; ++i) {
      uint32_t v;
      std::memcpy(&v, p + i * 4, 4);
      out[i] = v;
    }
  }
}

at::Tensor TokenDataset::slice(int64_t start, int64_t length) const {
  if (start < 0 || length < 0 || start + length > count_)
    throw ShapeError(path_ + ": slice [" + std::to_string(start) + ", " + std::to_string(start + length) +
                     ") outside [0, " + std::to_string(count_) + ")");
  at::Tensor t = at::empty({length}, at::kLong);  // [length]
  copy_to(start, length, t.data_ptr<int64_t>());
  return t;
}

RandomWindowSampler::RandomWindowSampler(const TokenDataset& data, int64_t batch, int64_t seq_len, uint64_t seed)
    : data_(data), batch_(batch), seq_len_(seq_len), seed_(seed) {
  check_shape(data, batch, seq_len);
}

Batch RandomWindowSampler::next() {
  const auto starts_range = static_cast<uint64_t>(data_.size() - seq_len_);  // starts in [0, N-T-1]
  std::vector<int64_t> starts(batch_);
  for (int64_t i = 0; i < batch_; ++i) {
    const uint64_t k = step_ * static_cast<uint64_t>(batch_) + static_cast<uint64_t>(i);
    starts[i] = static_cast<int64_t>(mix(seed_, k) % starts_range);
  }
  ++step_;
  return make_batch(data_, starts, seq_len_);
}

nlohmann::json RandomWindowSampler::state() const {
  return {{"kind", "random_window"}, {"seed", seed_}, {"step", step_}, {"batch", batch_}, {"seq_len", seq_len_}};
}

void RandomWindowSampler::restore(const nlohmann::json& s) {
  // A json default: a typed one makes value() throw on a "kind" of another type.
  if (!s.is_object() || s.value("kind", nlohmann::json()) != "random_window")
    throw ConfigError("random window sampler state: expected kind \"random_window\"");
  if (!s.contains("seed") || !s.at("seed").is_number_unsigned() || s.at("seed").get<uint64_t>() != seed_ ||
      state_int(s, "batch", "random window sampler") != batch_ ||
      state_int(s, "seq_len", "random window sampler") != seq_len_)
    throw ConfigError("random window sampler state: saved with another seed, batch or seq_len");
  step_ = static_cast<uint64_t>(state_int(s, "step", "random window sampler"));
}

std::vector<Batch> fixed_eval_batches(const TokenDataset& data, int64_t n_batches, int64_t batch, int64_t seq_len) {
  check_shape(data, batch, seq_len);
  if (n_batches <= 0) throw ShapeError("fixed_eval_batches: n_batches must be positive");
  if (n_batches > std::numeric_limits<int64_t>::max() / batch)
    throw ShapeError("fixed_eval_batches: " + std::to_string(n_batches) + " batches of " + std::to_string(batch) +
                     " windows overflow a 64-bit count");
  const int64_t n = n_batches * batch;
  const int64_t last_start = data.size() - seq_len - 1;
  std::vector<Batch> out;
  for (int64_t b = 0; b < n_batches; ++b) {
    std::vector<int64_t> starts(batch);
    for (int64_t i = 0; i < batch; ++i) {
      const int64_t w = b * batch + i;
      // Evenly spread from the first to the last possible start.
      starts[i] = n == 1 ? 0 : static_cast<int64_t>((static_cast<__int128>(w) * last_start) / (n - 1));
    }
    out.push_back(make_batch(data, starts, seq_len));
  }
  return out;
}

std::vector<Batch> id_batches(const std::vector<int64_t>& ids, int64_t seq_len, int64_t batch, int64_t max_batches,
                              int64_t vocab, const std::string& origin) {
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n < 2) throw FormatError(origin + ": need at least 2 tokens to analyse, got " + std::to_string(n));
  if (seq_len < 1 || batch < 1 || max_batches < 1)
    throw ShapeError("id_batches: seq_len, batch and max_batches must be positive");
  for (int64_t id : ids)
    if (id < 0 || id >= vocab)
      throw FormatError(origin + ": token id " + std::to_string(id) + " is outside the model's vocabulary of " +
                        std::to_string(vocab));
  const int64_t T = std::min(seq_len, n - 1);
  const int64_t windows = std::min((n - 1) / T, max_batches > std::numeric_limits<int64_t>::max() / batch
                                                     ? std::numeric_limits<int64_t>::max()
                                                     : batch * max_batches);
  const at::Tensor all = at::tensor(ids, at::TensorOptions(at::kLong));
  std::vector<Batch> out;
  for (int64_t w0 = 0; w0 < windows; w0 += batch) {
    const int64_t nb = std::min(batch, windows - w0);
    std::vector<at::Tensor> in, tg;
    for (int64_t w = w0; w < w0 + nb; ++w) {
      in.push_back(all.narrow(0, w * T, T));
      tg.push_back(all.narrow(0, w * T + 1, T));
    }
    out.push_back({at::stack(in), at::stack(tg)});  // [nb, T] each
  }
  return out;
}

}  // namespace metalm
