#include "metalm/analysis/controls.hpp"

#include <algorithm>
#include <map>
#include <numeric>
#include <vector>

#include "metalm/core/error.hpp"
#include "metalm/core/hash.hpp"

namespace metalm {
namespace {

std::vector<int64_t> to_longs(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kLong).cpu().contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

at::Tensor from_longs(const std::vector<int64_t>& v) {
  return at::tensor(at::ArrayRef<int64_t>(v), at::TensorOptions(at::kLong));
}

// Partners (indices into `members`' positions in `rows`) of one cycle.
void cycle(const std::vector<int64_t>& rows, const std::vector<int64_t>& members, uint64_t seed, uint64_t stream,
           std::vector<int64_t>& partner) {
  std::vector<std::pair<uint64_t, int64_t>> keyed;  // (key, row), sorted: ties by row
  keyed.reserve(members.size());
  for (int64_t i : members) keyed.emplace_back(mix(seed, kPermutationKey, stream, rows[static_cast<size_t>(i)]), rows[static_cast<size_t>(i)]);
  std::vector<size_t> order(members.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return keyed[a] < keyed[b]; });
  for (size_t j = 0; j < order.size(); ++j)
    partner[static_cast<size_t>(members[order[j]])] = members[order[(j + 1) % order.size()]];
}

}  // namespace

at::Tensor cycle_partners(const at::Tensor& rows, uint64_t seed, uint64_t stream) {
  if (rows.dim() != 1) throw ShapeError("cycle_partners: rows must be [n]");
  const std::vector<int64_t> r = to_longs(rows);
  std::vector<int64_t> all(r.size()), partner(r.size());
  std::iota(all.begin(), all.end(), int64_t{0});
  cycle(r, all, seed, stream, partner);
  return from_longs(partner);
}

at::Tensor shuffled_sources(const at::Tensor& rows, int64_t total, uint64_t seed) {
  const std::vector<int64_t> r = to_longs(rows);
  const std::vector<int64_t> partner = to_longs(cycle_partners(rows, seed, kShuffledStream));
  std::vector<int64_t> source(static_cast<size_t>(total));
  std::iota(source.begin(), source.end(), int64_t{0});
  for (size_t i = 0; i < r.size(); ++i) {
    if (r[i] < 0 || r[i] >= total) throw ShapeError("shuffled_sources: a row lies outside the batch");
    source[static_cast<size_t>(r[i])] = r[static_cast<size_t>(partner[i])];
  }
  return from_longs(source);
}

at::Tensor bigram_sources(const at::Tensor& rows, const at::Tensor& current, int64_t total, uint64_t seed,
                          at::Tensor& fallback) {
  std::vector<int64_t> source = to_longs(shuffled_sources(rows, total, seed));
  const std::vector<int64_t> r = to_longs(rows);
  std::vector<double> fell(r.size(), 1.0);
  if (current.defined()) {
    const std::vector<int64_t> tok = to_longs(current);
    if (tok.size() != r.size()) throw ShapeError("bigram_sources: one current token per row is needed");
    std::map<int64_t, std::vector<int64_t>> groups;  // token -> indices into rows
    for (size_t i = 0; i < r.size(); ++i) groups[tok[i]].push_back(static_cast<int64_t>(i));
    std::vector<int64_t> partner(r.size());
    for (const auto& [token, members] : groups) {
      if (members.size() < 2) continue;
      cycle(r, members, seed, kBigramStream, partner);
      for (int64_t i : members) {
        source[static_cast<size_t>(r[static_cast<size_t>(i)])] = r[static_cast<size_t>(partner[static_cast<size_t>(i)])];
        fell[static_cast<size_t>(i)] = 0.0;
      }
    }
  }
  fallback = at::tensor(at::ArrayRef<double>(fell), at::TensorOptions(at::kDouble));
  return from_longs(source);
}

}  // namespace metalm
