#include "metalm/data/bpe_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <limits>
#include <sstream>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/data/pretokenizer.hpp"
#include "metalm/data/unicode.hpp"

namespace metalm {
namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();
// Bound on cached pre-tokens; the cache restarts when it is full so memory
// stays bounded on endless streams of distinct words.
constexpr std::size_t kCacheLimit = 1 << 20;

inline uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

}  // namespace

BpeTokenizer::BpeTokenizer(std::vector<std::string> tokens,
                           const std::vector<std::pair<int32_t, int32_t>>& merges, int64_t eot_id,
                           std::string spec)
    : tokens_(std::move(tokens)), eot_id_(eot_id), spec_(std::move(spec)) {
  if (eot_id_ < 0 || eot_id_ >= static_cast<int64_t>(tokens_.size()))
    throw FormatError(spec_ + ": end-of-text id " + std::to_string(eot_id_) + " outside the vocabulary");
  ids_.reserve(tokens_.size());
  for (std::size_t id = 0; id < tokens_.size(); ++id) {
    if (static_cast<int64_t>(id) == eot_id_) continue;
    if (!ids_.emplace(std::string_view(tokens_[id]), static_cast<int32_t>(id)).second)
      throw FormatError(spec_ + ": token id " + std::to_string(id) + " duplicates another token's bytes");
  }
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    const auto it = ids_.find(std::string_view(&c, 1));
    if (it == ids_.end()) throw FormatError(spec_ + ": byte " + std::to_string(b) + " has no token");
    byte_ids_[b] = it->second;
  }
  // Rank of each token = index of the merge that first makes it.
  std::vector<uint32_t> rank(tokens_.size(), kNoRank);
  for (std::size_t i = 0; i < merges.size(); ++i) {
    const auto [a, b] = merges[i];
    if (a < 0 || b < 0 || a >= vocab_size() || b >= vocab_size())
      throw FormatError(spec_ + ": merge " + std::to_string(i) + " names an id outside the vocabulary");
    const auto it = ids_.find(tokens_[a] + tokens_[b]);
    if (it == ids_.end())
      throw FormatError(spec_ + ": merge " + std::to_string(i) + " makes a token missing from the vocabulary");
    if (rank[it->second] == kNoRank) rank[it->second] = static_cast<uint32_t>(i);
  }
  // tiktoken joins two parts whenever their concatenation is a ranked token,
  // whichever merge made it, so index every split of every ranked token.
  for (std::size_t id = 0; id < tokens_.size(); ++id) {
    if (rank[id] == kNoRank) continue;
    const std::string_view t = tokens_[id];
    for (std::size_t k = 1; k < t.size(); ++k) {
      const auto l = ids_.find(t.substr(0, k));
      const auto r = ids_.find(t.substr(k));
      if (l == ids_.end() || r == ids_.end()) continue;
      pairs_[pair_key(l->second, r->second)] = (static_cast<uint64_t>(rank[id]) << 32) | id;
    }
  }
}

std::unique_ptr<BpeTokenizer> BpeTokenizer::load(const std::string& dir, const std::string& spec) {
  const std::string enc_path = dir + "/encoder.json";
  const std::string bpe_path = dir + "/vocab.bpe";
  const nlohmann::json enc = parse_json(read_file(enc_path, InputKind::Json), enc_path, JsonError::Format);
  if (!enc.is_object()) throw FormatError(enc_path + ": expected an object of token -> id");
  std::vector<std::string> tokens(enc.size());
  std::vector<bool> seen(enc.size(), false);
  int64_t eot = -1;
  std::unordered_map<std::string, int32_t> spelled_ids;
  for (const auto& [spelled, value] : enc.items()) {
    if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
        value.get<int64_t>() >= static_cast<int64_t>(enc.size()))
      throw FormatError(enc_path + ": id of '" + excerpt(spelled) + "' must be an integer in [0, " +
                        std::to_string(enc.size()) + ")");
    const auto id = value.get<int32_t>();
    if (seen[id]) throw FormatError(enc_path + ": id " + std::to_string(id) + " appears twice");
    seen[id] = true;
    spelled_ids[spelled] = id;
    if (spelled == kEndOfText) {
      eot = id;
      tokens[id] = kEndOfText;
    } else {
      tokens[id] = unicode::token_bytes_from_unicode(spelled);
    }
  }
  if (eot < 0) throw FormatError(enc_path + ": no \"" + std::string(kEndOfText) + "\" token");

  const std::string text = read_file(bpe_path);
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::istringstream lines(text);
  std::string line;
  std::size_t line_no = 0;
  while (std::getline(lines, line)) {
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const auto space = line.find(' ');
    if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos)
      throw FormatError(bpe_path + ":" + std::to_string(line_no) + ": expected two tokens separated by one space");
    const auto a = spelled_ids.find(line.substr(0, space));
    const auto b = spelled_ids.find(line.substr(space + 1));
    if (a == spelled_ids.end() || b == spelled_ids.end())
      throw FormatError(bpe_path + ":" + std::to_string(line_no) + ": merge of tokens missing from encoder.json");
    merges.emplace_back(a->second, b->second);
  }
  return std::make_unique<BpeTokenizer>(std::move(tokens), merges, eot, spec);
}

void BpeTokenizer::bpe(std::string_view piece, std::vector<int32_t>& out) const {
  // parts[i] is the id of the i-th current part; ranks[i] the rank of
  // joining parts i and i+1. Pieces are short words, so a linear scan for the
  // minimum beats a heap.
  const std::size_t n = piece.size();
  std::vector<int32_t> parts(n);
  for (std::size_t i = 0; i < n; ++i) parts[i] = byte_ids_[static_cast<unsigned char>(piece[i])];
  std::vector<uint64_t> ranks(n);
  auto lookup = [&](std::size_t i) -> uint64_t {
    if (i + 1 >= parts.size()) return std::numeric_limits<uint64_t>::max();
    const auto it = pairs_.find(pair_key(parts[i], parts[i + 1]));
    return it == pairs_.end() ? std::numeric_limits<uint64_t>::max() : it->second;
  };
  for (std::size_t i = 0; i + 1 < n; ++i) ranks[i] = lookup(i);
  while (parts.size() > 1) {
    std::size_t best = 0;
    for (std::size_t i = 1; i + 1 < parts.size(); ++i)
      if ((ranks[i] >> 32) < (ranks[best] >> 32)) best = i;
    if (ranks[best] == std::numeric_limits<uint64_t>::max()) break;
    parts[best] = static_cast<int32_t>(ranks[best] & 0xffffffffu);
    parts.erase(parts.begin() + best + 1);
    ranks.erase(ranks.begin() + best + 1);
    ranks[best] = lookup(best);
    if (best > 0) ranks[best - 1] = lookup(best - 1);
  }
  out.insert(out.end(), parts.begin(), parts.end());
}

void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int64_t>& out) const {
  if (const auto it = ids_.find(piece); it != ids_.end()) {
    out.push_back(it->second);
    return;
  }
  if (const auto it = cache_.find(piece); it != cache_.end()) {
    const int32_t* p = cache_ids_.data() + it->second.first;
    out.insert(out.end(), p, p + it->second.second);
    return;
  }
  if (cache_.size() >= kCacheLimit) {
    cache_.clear();
    cache_keys_.clear();
    cache_ids_.clear();
  }
  const auto offset = static_cast<uint32_t>(cache_ids_.size());
  bpe(piece, cache_ids_);
  const auto count = static_cast<uint32_t>(cache_ids_.size() - offset);
  cache_keys_.emplace_back(piece);
  cache_.emplace(std::string_view(cache_keys_.back()), std::make_pair(offset, count));
  out.insert(out.end(), cache_ids_.begin() + offset, cache_ids_.end());
}

std::vector<int64_t> BpeTokenizer::encode(std::string_view text) const {
  std::vector<int64_t> out;
  out.reserve(text.size() / 3 + 1);
  // One lock per call: callers that want parallelism encode documents with
  // separate tokenizer instances.
  std::lock_guard<std::mutex> lock(cache_mutex_);
  gpt2_pretokenize(text, [&](std::string_view piece) { encode_piece(piece, out); });
  return out;
}

std::string BpeTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (const int64_t id : ids) {
    if (id < 0 || id >= vocab_size())
      throw FormatError(spec_ + ": token id " + std::to_string(id) + " outside [0, " +
                        std::to_string(vocab_size()) + ")");
    out += tokens_[id];
  }
  return out;
}

}  // namespace metalm
