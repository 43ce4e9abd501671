// JSON (de)serialization of the typed configs: strict reading (unknown keys,
// wrong types and impossible values are errors), typed `--set` overrides and
// the resolved dump.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "metalm/config/config.hpp"

namespace metalm {

nlohmann::json to_json(const RunConfig& c);
nlohmann::json to_json(const ModelConfig& c);

// Strict readers. `origin` names the source in messages (a file path).
// Keys absent from the JSON keep their defaults. Not resolved. A run's
// config.json also holds, under kRuntimeRecordKey, a record of what its
// arithmetic ran on (written by the trainer); the reader skips it.
inline constexpr const char* kRuntimeRecordKey = "runtime";
RunConfig run_config_from_json(const nlohmann::json& j, const std::string& origin = "config");
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& origin = "config");

// Applies one `section.key=value` assignment, parsing the value by the key's
// type (int, float, bool, string, enum name, list as [1,2] or 1,2); a float
// must be finite (inf and nan are refused, naming the key).
void apply_override(RunConfig& c, const std::string& assignment);

// Loads a config file (or defaults when path is empty), applies the
// overrides in order, then resolves and validates.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});

// The deepest nesting of arrays and objects accepted in any JSON metalm reads
// (configs, state.json, meta.json, encoder.json, Hugging Face config.json,
// safetensors headers). Real files nest a few levels; nlohmann::json dumps and
// copies values recursively, so an unbounded depth could exhaust the stack.
constexpr int kMaxJsonDepth = 256;

// Which typed error a JSON reader throws: configs are usage errors (exit 2),
// data and weight files are FormatErrors.
enum class JsonError { Config, Format };

// Parses JSON read from `origin` (named in messages). Malformed text (with
// line and column), nesting beyond kMaxJsonDepth, numbers beyond a double's
// range (naming their key, e.g. "train.lr") and a key given twice in one
// object (naming it) throw the chosen error; no message quotes more than
// about 80 characters of the input.
nlohmann::json parse_json(const std::string& text, const std::string& origin, JsonError kind = JsonError::Config);

// Reads a JSON file and parses it with parse_json: a config (JsonError::Config)
// as InputKind::Config (16 MiB at most, and a pipe such as `--config <(jq ...)`
// will do), any other JSON as InputKind::Json (a regular file of at most
// 256 MiB). IoError when it cannot be read.
nlohmann::json read_json_file(const std::string& path, JsonError kind = JsonError::Config);

// A JSON value quoted in an error message: its text, at most about 80
// characters (metalm::excerpt).
std::string json_excerpt(const nlohmann::json& j);

// Writes JSON (2-space indent, final newline) atomically and durably
// (write_file_atomic, core/atomic_file.hpp): readers never see a partial file.
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace metalm
