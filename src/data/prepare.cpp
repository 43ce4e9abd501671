#include "metalm/data/prepare.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/hash.hpp"
#include "metalm/data/corpus.hpp"
#include "metalm/data/token_file.hpp"
#include "metalm/data/tokenizer.hpp"

namespace metalm {
namespace fs = std::filesystem;

std::vector<std::size_t> val_documents(std::size_t n, double val_fraction, uint64_t seed) {
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    throw ConfigError("--val-fraction must be in [0, 1), got " + std::to_string(val_fraction));
  auto n_val = static_cast<std::size_t>(std::llround(val_fraction * static_cast<double>(n)));
  if (val_fraction > 0 && n >= 2) n_val = std::max<std::size_t>(n_val, 1);
  n_val = std::min(n_val, n > 0 ? n - 1 : 0);  // train keeps at least one document
  // Fisher-Yates with our own generator: std::shuffle's result differs
  // between standard libraries.
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  SplitMix64 rng(seed);
  for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng.next() % i]);
  std::vector<std::size_t> val(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(n_val));
  std::sort(val.begin(), val.end());
  return val;
}

DatasetMeta prepare_dataset(const PrepareOptions& o) {
  if (o.out.empty()) throw ConfigError("prepare: an output directory is required (--out)");
  if (o.inputs.empty()) throw ConfigError("prepare: at least one input is required (--input)");
  const auto tokenizer = make_tokenizer(o.tokenizer);
  const auto docs = read_corpus(o.inputs, o.format);
  if (docs.empty()) throw IoError("prepare: the inputs hold no documents");
  const auto val = val_documents(docs.size(), o.val_fraction, o.seed);

  // Everything is written under OUT.tmp-PID and renamed into place at the
  // end (core/atomic_file.hpp): a failure leaves nothing, an existing OUT is
  // replaced only by a complete dataset.
  AtomicDir out(o.out);

  DatasetMeta meta;
  meta.tokenizer = tokenizer->spec();
  meta.vocab_size = tokenizer->vocab_size();
  meta.eot_id = tokenizer->eot_id();
  meta.train_counts.assign(static_cast<std::size_t>(meta.vocab_size), 0);
  TokenFileWriter train(out / "train.bin", meta.vocab_size);
  TokenFileWriter valw(out / "val.bin", meta.vocab_size);
  std::size_t next_val = 0;
  for (std::size_t d = 0; d < docs.size(); ++d) {
    const bool is_val = next_val < val.size() && val[next_val] == d;
    if (is_val) ++next_val;
    std::vector<int64_t> ids;
    try {
      ids = tokenizer->encode(docs[d].text);
    } catch (const FormatError& e) {
      throw FormatError(docs[d].name + ": " + e.what());
    }
    ids.push_back(tokenizer->eot_id());
    DatasetMeta::Split& split = is_val ? meta.val : meta.train;
    split.documents += 1;
    split.bytes += static_cast<int64_t>(docs[d].text.size());
    split.tokens += static_cast<int64_t>(ids.size());
    if (is_val) {
      valw.append(ids);
    } else {
      train.append(ids);
      for (const int64_t id : ids) ++meta.train_counts[static_cast<std::size_t>(id)];
    }
  }
  train.finish();
  valw.finish();
  write_file_atomic(out / "meta.json", to_json(meta).dump() + "\n");
  out.commit();
  spdlog::info("prepare: {} train documents ({} tokens), {} val documents ({} tokens) -> {}", meta.train.documents,
               meta.train.tokens, meta.val.documents, meta.val.tokens, o.out);
  return meta;
}

}  // namespace metalm
