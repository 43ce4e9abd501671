// `metalm prepare`: corpus -> tokenized train/val splits + meta.json.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "metalm/data/dataset_meta.hpp"

namespace metalm {

struct PrepareOptions {
  std::string tokenizer = "gpt2";   // make_tokenizer() spec
  std::vector<std::string> inputs;  // files or directories
  std::string format = "text";      // read_corpus() format: text | brown
  double val_fraction = 0.05;       // share of documents held out, in [0, 1)
  uint64_t seed = 1337;             // the document split's shuffle
  std::string out;                  // directory for train.bin, val.bin, meta.json
};

// Splits documents (not tokens) between train and val by a seeded shuffle:
// round(val_fraction * documents) go to val (at least one when the fraction
// is positive and there are two or more), each split keeping corpus order.
// Each document's ids are followed by end-of-text. The directory is written
// under a temporary name and renamed at the end (AtomicDir,
// core/atomic_file.hpp), so a failure leaves nothing behind; an existing
// `out` directory is replaced as a whole.
DatasetMeta prepare_dataset(const PrepareOptions& options);

// The documents that go to val, as indices into the corpus (sorted).
std::vector<std::size_t> val_documents(std::size_t n_documents, double val_fraction, uint64_t seed);

}  // namespace metalm
