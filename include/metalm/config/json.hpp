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
// Keys absent from the JSON keep their defaults. Not resolved.
RunConfig run_config_from_json(const nlohmann::json& j, const std::string& origin = "config");
ModelConfig model_config_from_json(const nlohmann::json& j, const std::string& origin = "config");

// Applies one `section.key=value` assignment, parsing the value by the key's
// type (int, float, bool, string, enum name, list as [1,2] or 1,2).
void apply_override(RunConfig& c, const std::string& assignment);

// Loads a config file (or defaults when path is empty), applies the
// overrides in order, then resolves and validates.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Reads a JSON file; a syntax error names the file, line and column.
nlohmann::json read_json_file(const std::string& path);

// Writes JSON (2-space indent, final newline) atomically and durably
// (write_file_atomic, core/atomic_file.hpp): readers never see a partial file.
void write_json_file(const std::string& path, const nlohmann::json& j);

}  // namespace metalm
