#include "metalm/data/dataset_meta.hpp"

#include <algorithm>
#include <filesystem>
#include <type_traits>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"

namespace metalm {
namespace {

nlohmann::json split_json(const DatasetMeta::Split& s) {
  return {{"documents", s.documents}, {"bytes", s.bytes}, {"tokens", s.tokens}};
}

template <typename T>
T get(const nlohmann::json& j, const char* key, const std::string& origin) {
  if (!j.is_object() || !j.contains(key)) throw FormatError(origin + ": missing key '" + key + "'");
  // nlohmann converts floats to integers by a plain cast (undefined beyond
  // int64's range), so integers must be written as integers.
  const auto integral = [](const nlohmann::json& v) { return v.is_number_integer(); };
  if constexpr (std::is_same_v<T, int64_t>) {
    if (!integral(j.at(key))) throw FormatError(origin + ": key '" + key + "' must be an integer");
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    const auto& v = j.at(key);
    if (!v.is_array() || !std::all_of(v.begin(), v.end(), integral))
      throw FormatError(origin + ": key '" + key + "' must be a list of integers");
  }
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
  if (s.documents < 0 || s.bytes < 0 || s.tokens < 0)
    throw FormatError(origin + ": documents, bytes and tokens must not be negative");
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
  // A json default: a typed one makes value() throw on a "format" of another type.
  if (!j.is_object() || j.value("format", nlohmann::json()) != "metalm-dataset")
    throw FormatError(origin + ": not a metalm dataset meta file (expected \"format\": \"metalm-dataset\")");
  if (get<int64_t>(j, "version", origin) != 1)
    throw FormatError(origin + ": dataset meta version " + json_excerpt(j.at("version")) + ", expected 1");
  DatasetMeta m;
  m.tokenizer = get<std::string>(j, "tokenizer", origin);
  m.vocab_size = get<int64_t>(j, "vocab_size", origin);
  m.eot_id = get<int64_t>(j, "eot_id", origin);
  m.train = split_from_json(get<nlohmann::json>(j, "train", origin), origin + ": train");
  m.val = split_from_json(get<nlohmann::json>(j, "val", origin), origin + ": val");
  m.train_counts = get<std::vector<int64_t>>(j, "train_counts", origin);
  if (m.vocab_size < 1) throw FormatError(origin + ": vocab_size " + std::to_string(m.vocab_size) + " is not positive");
  if (m.eot_id < 0 || m.eot_id >= m.vocab_size)
    throw FormatError(origin + ": eot_id " + std::to_string(m.eot_id) + " is outside the vocabulary [0, " +
                      std::to_string(m.vocab_size) + ")");
  if (static_cast<int64_t>(m.train_counts.size()) != m.vocab_size)
    throw FormatError(origin + ": train_counts has " + std::to_string(m.train_counts.size()) +
                      " entries, expected vocab_size = " + std::to_string(m.vocab_size));
  for (std::size_t i = 0; i < m.train_counts.size(); ++i)
    if (m.train_counts[i] < 0)
      throw FormatError(origin + ": train_counts[" + std::to_string(i) + "] = " + std::to_string(m.train_counts[i]) +
                        " is negative");
  return m;
}

DatasetMeta read_dataset_meta(const std::string& dir_or_meta_json) {
  namespace fs = std::filesystem;
  fs::path path(dir_or_meta_json);
  std::error_code ec;
  if (fs::is_directory(path, ec)) path /= "meta.json";
  std::string text;
  try {
    text = read_file(path.string(), InputKind::Json);
  } catch (const IoError& e) {
    throw IoError(std::string(e.what()) + " (a dataset's meta.json is written by `metalm prepare`)");
  }
  return dataset_meta_from_json(parse_json(text, path.string(), JsonError::Format), path.string());
}

}  // namespace metalm
