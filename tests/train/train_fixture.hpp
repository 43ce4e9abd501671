// A tiny prepared dataset written by the test itself, and a tiny run config
// that trains on it in well under a second per dozen steps.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"
#include "metalm/config/json.hpp"
#include "metalm/data/dataset_meta.hpp"
#include "metalm/data/token_file.hpp"
#include "metalm/train/trainer.hpp"
#include "../model/tiny_configs.hpp"
#include "support/temp_dir.hpp"

namespace metalm::test {

// A learnable sequence over a vocabulary of 16: a period-7 cycle of ids 1..7
// with every 5th element replaced by a hashed id, so the next token is mostly
// predictable from the previous one but not exactly.
inline std::vector<int64_t> synthetic_tokens(int64_t n, uint64_t salt) {
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) {
    ids[i] = 1 + i % 7;
    if (i % 5 == 4) ids[i] = 8 + static_cast<int64_t>(((i + salt) * 2654435761u) >> 7) % 8;
  }
  return ids;
}

inline void write_tokens(const std::string& path, const std::vector<int64_t>& ids, int64_t vocab) {
  TokenFileWriter w(path, vocab);
  w.append(ids);
  w.finish();
}

// DIR/train.bin, val.bin, meta.json (tokenizer "byte" is only a label here:
// 2 bytes per token, so bits per byte = loss / ln 2 / 2).
inline void write_dataset(const std::string& dir, int64_t train_tokens = 20000, int64_t val_tokens = 2000) {
  std::filesystem::create_directories(dir);
  const int64_t vocab = 16;
  const auto train = synthetic_tokens(train_tokens, 0), val = synthetic_tokens(val_tokens, 99);
  write_tokens(dir + "/train.bin", train, vocab);
  write_tokens(dir + "/val.bin", val, vocab);
  DatasetMeta m;
  m.tokenizer = "byte";
  m.vocab_size = vocab;
  m.eot_id = 0;
  m.train = {1, 2 * train_tokens, train_tokens};
  m.val = {1, 2 * val_tokens, val_tokens};
  m.train_counts.assign(vocab, 0);
  for (auto id : train) ++m.train_counts[id];
  write_json_file(dir + "/meta.json", to_json(m));
}

inline RunConfig tiny_config(const std::string& data_dir) {
  RunConfig c;
  c.name = "test";
  c.model = testing::small_config(16, 16, 32, 1);
  c.data.dir = data_dir;
  c.train.steps = 40;
  c.train.batch_size = 8;
  c.train.lr = 1e-2;
  c.train.min_lr = 1e-3;
  c.train.warmup_steps = 5;
  c.train.eval_every = 20;
  c.train.eval_batches = 2;
  c.train.log_every = 1;
  c.train.ckpt_every = 20;
  c.train.keep_last = 2;
  c.train.seed = 7;
  c.train.threads = 1;
  resolve(c);
  return c;
}

// Trainer options of a test: one thread (the runs are compared bit for bit),
// and resume/stop_at as the test asks.
inline TrainerOptions trainer_options(const std::string& run_dir, bool resume = false, int64_t stop_at = 0) {
  TrainerOptions o;
  o.run_dir = run_dir;
  o.resume = resume;
  o.threads = 1;
  o.stop_at = stop_at;
  return o;
}

}  // namespace metalm::test
