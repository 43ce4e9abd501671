// meta.json beside train.bin/val.bin: how the dataset was made and what it
// holds (tokenizer spec, documents, text bytes and tokens per split, and the
// count of every token id in train, for frequency analyses).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace metalm {

struct DatasetMeta {
  std::string tokenizer;  // spec for make_tokenizer()
  int64_t vocab_size = 0;
  int64_t eot_id = 0;
  struct Split {
    int64_t documents = 0, bytes = 0, tokens = 0;  // tokens include one end-of-text per document
  } train, val;
  std::vector<int64_t> train_counts;  // [vocab_size]

  // Text bytes per token of a split (0 when it has no tokens): converts a
  // loss per token into bits per byte.
  double bytes_per_token(const Split& split) const;
};

// meta.json's object ({"format": "metalm-dataset", "version": 1, ...}) and
// back; the reader throws FormatError naming `origin` and the key.
nlohmann::json to_json(const DatasetMeta& meta);
DatasetMeta dataset_meta_from_json(const nlohmann::json& j, const std::string& origin);

// Accepts the dataset directory or the meta.json path. Throws IoError when
// missing, FormatError when malformed.
DatasetMeta read_dataset_meta(const std::string& dir_or_meta_json);

}  // namespace metalm
