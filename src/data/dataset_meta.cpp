#include "metalm/data/dataset_meta.hpp"

#include <filesystem>
#include <fstream>

#include "metalm/core/error.hpp"

namespace metalm {
namespace {

nlohmann::json split_json(const DatasetMeta::Split& s) {
  return {{"documents", s.documents}, {"bytes", s.bytes}, {"tokens", s.tokens}};
}

template <typename T>
T get(const nlohmann::json& j, const char* key, const std::string& origin) {
  if (!j.is_object() || !j.contains(key)) throw FormatError(origin + ": missing key '" + key + "'");
  try {
    return j.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    throw FormatError(origin + ": key '" + key + "' has the wrong type");
  }
}

DatasetMeta::Split split_from_json(const nlohmann::json& j, const std::string& origin) {
  DatasetMeta::Split s;
  s.documents = get<int64_t>(j, "documents", origin);
  s.bytes = get<int64_t>(j, "bytes", origin);
  s.tokens = get<int64_t>(j, "tokens", origin);
  return s;
}

}  // namespace

double DatasetMeta::bytes_per_token(const Split& split) const {
  return split.tokens > 0 ? static_cast<double>(split.bytes) / static_cast<double>(split.tokens) : 0.0;
}

nlohmann::json to_json(const DatasetMeta& m) {
  return {{"format", "metalm-dataset"},
          {"version", 1},
          {"tokenizer", m.tokenizer},
          {"vocab_size", m.vocab_size},
          {"eot_id", m.eot_id},
          {"train", split_json(m.train)},
          {"val", split_json(m.val)},
          {"train_counts", m.train_counts}};
}

DatasetMeta dataset_meta_from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object() || j.value("format", "") != "metalm-dataset")
    throw FormatError(origin + ": not a metalm dataset meta file (expected \"format\": \"metalm-dataset\")");
  if (get<int>(j, "version", origin) != 1)
    throw FormatError(origin + ": dataset meta version " + j.at("version").dump() + ", expected 1");
  DatasetMeta m;
  m.tokenizer = get<std::string>(j, "tokenizer", origin);
  m.vocab_size = get<int64_t>(j, "vocab_size", origin);
  m.eot_id = get<int64_t>(j, "eot_id", origin);
  m.train = split_from_json(get<nlohmann::json>(j, "train", origin), origin + ": train");
  m.val = split_from_json(get<nlohmann::json>(j, "val", origin), origin + ": val");
  m.train_counts = get<std::vector<int64_t>>(j, "train_counts", origin);
  if (static_cast<int64_t>(m.train_counts.size()) != m.vocab_size)
    throw FormatError(origin + ": train_counts has " + std::to_string(m.train_counts.size()) +
                      " entries, expected vocab_size = " + std::to_string(m.vocab_size));
  return m;
}

DatasetMeta read_dataset_meta(const std::string& dir_or_meta_json) {
  namespace fs = std::filesystem;
  fs::path path(dir_or_meta_json);
  if (fs::is_directory(path)) path /= "meta.json";
  std::ifstream in(path);
  if (!in) throw IoError("cannot read dataset meta " + path.string() + " (written by `metalm prepare`)");
  nlohmann::json j;
  try {
    in >> j;
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(path.string() + ": not valid JSON: " + e.what());
  }
  return dataset_meta_from_json(j, path.string());
}

}  // namespace metalm
