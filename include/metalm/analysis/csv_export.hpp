// Flat CSV views of an analysis JSON (from analyze_model), for spreadsheets
// and quick plots: steps.csv, states.csv, by_position.csv.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

namespace metalm {

// Writes DIR/steps.csv (one row per inner step), DIR/states.csv (one row per
// state) and DIR/by_position.csv (one row per step and position) as one
// directory, atomically (AtomicDir, core/atomic_file.hpp): an existing DIR is
// replaced as a whole. Missing statistics are empty cells. Throws IoError.
void write_analysis_csv(const nlohmann::json& analysis, const std::string& dir);

}  // namespace metalm
