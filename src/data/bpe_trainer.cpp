#include "metalm/data/bpe_trainer.hpp"

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <queue>
#include <tuple>
#include <unordered_map>

#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"
#include "metalm/data/bpe_tokenizer.hpp"
#include "metalm/data/pretokenizer.hpp"
#include "metalm/data/unicode.hpp"

namespace metalm {
namespace {

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

// Heap entry; the largest count first, then the smallest pair.
struct Candidate {
  int64_t count;
  uint64_t pair;
  bool operator<(const Candidate& o) const { return count != o.count ? count < o.count : pair > o.pair; }
};

}  // namespace

BpeTrainResult train_bpe(const std::vector<std::string>& texts, int64_t vocab_size) {
  if (vocab_size < 257) throw ConfigError("tokenizer-train: --vocab-size must be at least 257, got " +
                                          std::to_string(vocab_size));
  BpeTrainResult r;
  // Byte tokens take ids 0..255 in GPT-2's order (printable bytes first).
  std::vector<int32_t> byte_id(256);
  {
    std::vector<std::pair<char32_t, int>> order;
    for (int b = 0; b < 256; ++b) order.emplace_back(unicode::byte_to_unicode()[b], b);
    std::sort(order.begin(), order.end());
    for (const auto& [cp, b] : order) {
      byte_id[b] = static_cast<int32_t>(r.tokens.size());
      r.tokens.emplace_back(1, static_cast<char>(b));
    }
  }

  // Unique pre-token words with their counts.
  std::unordered_map<std::string_view, int64_t> counts;
  for (const auto& text : texts)
    gpt2_pretokenize(text, [&](std::string_view piece) { ++counts[piece]; });
  std::vector<std::pair<std::string_view, int64_t>> sorted(counts.begin(), counts.end());
  std::sort(sorted.begin(), sorted.end());  // a fixed word order, independent of hashing
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [w, c] : sorted) {
    Word word{{}, c};
    for (unsigned char b : w) word.symbols.push_back(byte_id[b]);
    words.push_back(std::move(word));
  }

  std::unordered_map<uint64_t, int64_t> pair_count;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;  // pair -> words that may hold it
  for (std::size_t wi = 0; wi < words.size(); ++wi) {
    const auto& s = words[wi].symbols;
    for (std::size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t k = pair_key(s[i], s[i + 1]);
      pair_count[k] += words[wi].count;
      auto& list = where[k];
      if (list.empty() || list.back() != static_cast<int32_t>(wi)) list.push_back(static_cast<int32_t>(wi));
    }
  }
  std::priority_queue<Candidate> heap;
  for (const auto& [k, c] : pair_count) heap.push({c, k});

  std::unordered_map<std::string, int32_t> id_of;
  for (std::size_t i = 0; i < r.tokens.size(); ++i) id_of[r.tokens[i]] = static_cast<int32_t>(i);
  const int64_t target = vocab_size - 1;  // the last id is end-of-text
  std::unordered_map<uint64_t, int64_t> delta;
  while (static_cast<int64_t>(r.tokens.size()) < target && !heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    const auto it = pair_count.find(top.pair);
    const int64_t current = it == pair_count.end() ? 0 : it->second;
    if (current != top.count) {  // stale entry: requeue with the true count
      if (current > 0) heap.push({current, top.pair});
      continue;
    }
    if (current <= 0) break;
    const auto a = static_cast<int32_t>(top.pair >> 32);
    const auto b = static_cast<int32_t>(top.pair & 0xffffffffu);
    std::string joined = r.tokens[a] + r.tokens[b];
    int32_t new_id;
    if (const auto found = id_of.find(joined); found != id_of.end()) {
      new_id = found->second;  // another merge order already made these bytes
    } else {
      new_id = static_cast<int32_t>(r.tokens.size());
      id_of.emplace(joined, new_id);
      r.tokens.push_back(std::move(joined));
    }
    r.merges.emplace_back(a, b);

    // Rewrite every word that holds (a, b), recording how pair counts change.
    std::vector<int32_t> holders = std::move(where[top.pair]);
    where.erase(top.pair);
    delta.clear();
    for (const int32_t wi : holders) {
      Word& w = words[wi];
      auto& s = w.symbols;
      bool has = false;
      for (std::size_t i = 0; i + 1 < s.size(); ++i)
        if (s[i] == a && s[i + 1] == b) { has = true; break; }
      if (!has) continue;
      for (std::size_t i = 0; i + 1 < s.size(); ++i) delta[pair_key(s[i], s[i + 1])] -= w.count;
      std::size_t out = 0;
      for (std::size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == a && s[i + 1] == b) {
          s[out++] = new_id;
          ++i;
        } else {
          s[out++] = s[i];
        }
      }
      s.resize(out);
      for (std::size_t i = 0; i + 1 < s.size(); ++i) {
        const uint64_t k = pair_key(s[i], s[i + 1]);
        delta[k] += w.count;
        if (s[i] == new_id || s[i + 1] == new_id) {
          auto& list = where[k];
          if (list.empty() || list.back() != wi) list.push_back(wi);
        }
      }
    }
    // Apply in key order so the heap sees the same pushes on every run.
    std::vector<std::pair<uint64_t, int64_t>> changes(delta.begin(), delta.end());
    std::sort(changes.begin(), changes.end());
    for (const auto& [k, d] : changes) {
      if (d == 0) continue;
      int64_t& c = pair_count[k];
      c += d;
      if (d > 0) heap.push({c, k});
      if (c <= 0) pair_count.erase(k);
    }
  }
  if (static_cast<int64_t>(r.tokens.size()) < target)
    spdlog::warn("tokenizer-train: the corpus ran out of pairs at {} tokens (asked for {})", r.tokens.size() + 1,
                 vocab_size);
  r.eot_id = static_cast<int64_t>(r.tokens.size());
  r.tokens.emplace_back(BpeTokenizer::kEndOfText);
  return r;
}

void write_bpe_files(const BpeTrainResult& bpe, const std::string& dir) {
  nlohmann::ordered_json enc = nlohmann::ordered_json::object();
  for (std::size_t id = 0; id < bpe.tokens.size(); ++id) {
    const std::string spelled = static_cast<int64_t>(id) == bpe.eot_id ? bpe.tokens[id]
                                                                         : unicode::token_unicode_from_bytes(bpe.tokens[id]);
    if (!enc.contains(spelled)) enc[spelled] = id;
  }
  std::string merges = "#version: 0.2\n";
  for (const auto& [a, b] : bpe.merges)
    merges += unicode::token_unicode_from_bytes(bpe.tokens[a]) + " " + unicode::token_unicode_from_bytes(bpe.tokens[b]) + "\n";
  AtomicDir out(dir);
  write_file_atomic(out / "vocab.bpe", merges);
  write_file_atomic(out / "encoder.json", enc.dump() + "\n");
  out.commit();
}

}  // namespace metalm
