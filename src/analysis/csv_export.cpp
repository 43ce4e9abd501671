#include "metalm/analysis/csv_export.hpp"

#include <filesystem>
#include <sstream>
#include <vector>

#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"

namespace metalm {
namespace {

using json = nlohmann::json;

std::string cell(const json& v) {
  if (v.is_null()) return "";
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += (c == '"') ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  }
  if (v.is_number_float()) {
    std::ostringstream ss;
    ss.precision(9);
    ss << v.get<double>();
    return ss.str();
  }
  return v.dump();
}

// v[a][b] or null when a level is missing.
json dig(const json& v, const std::string& a, const std::string& b = "") {
  if (!v.contains(a)) return nullptr;
  if (b.empty()) return v[a];
  return (v[a].is_object() && v[a].contains(b)) ? v[a][b] : json(nullptr);
}

// One table, built in memory and written whole (write_file_atomic).
class CsvFile {
 public:
  CsvFile(std::string path, const std::vector<std::string>& header) : path_(std::move(path)) {
    row(std::vector<json>(header.begin(), header.end()));
  }
  void row(const std::vector<json>& cells) {
    for (size_t i = 0; i < cells.size(); ++i) (text_ += i ? "," : "") += cell(cells[i]);
    text_ += "\n";
  }
  void save() const { write_file_atomic(path_, text_); }

 private:
  std::string path_, text_;
};

}  // namespace

void write_analysis_csv(const json& a, const std::string& dir) {
  // The three tables appear together or not at all (core/atomic_file.hpp).
  AtomicDir out(dir);
  const std::vector<std::string> summaries{"alignment", "alignment_uniform", "step_size", "norm_before",
                                           "norm_update", "norm_grad"};
  {
    std::vector<std::string> header{"index", "layer", "kind", "from", "to", "loss_before", "loss_after",
                                    "first_order_decrease", "actual_decrease"};
    for (const auto& s : summaries)
      for (const char* q : {"mean", "std", "median", "q10", "q90"}) header.push_back(s + "_" + q);
    CsvFile f(out / "steps.csv", header);
    for (const auto& st : a.at("steps")) {
      std::vector<json> r{dig(st, "index"), dig(st, "layer"), dig(st, "kind"), dig(st, "from"), dig(st, "to"),
                          dig(st, "loss_before"), dig(st, "loss_after"), dig(st, "first_order_decrease"),
                          dig(st, "actual_decrease")};
      for (const auto& s : summaries)
        for (const char* q : {"mean", "std", "median", "q10", "q90"}) r.push_back(dig(st, s, q));
      f.row(r);
    }
    f.save();
  }
  {
    CsvFile f(out / "states.csv", {"index", "site", "loss", "norm_mean", "norm_median", "norm_q10", "norm_q90",
                                    "norm_freq_spearman_current", "norm_freq_spearman_target"});
    for (const auto& s : a.at("states"))
      f.row({dig(s, "index"), dig(s, "site"), dig(s, "loss"), dig(s, "norm", "mean"), dig(s, "norm", "median"),
             dig(s, "norm", "q10"), dig(s, "norm", "q90"), dig(s, "norm_freq_spearman", "current"),
             dig(s, "norm_freq_spearman", "target")});
    f.save();
  }
  {
    const std::vector<std::string> curves{"count", "alignment", "alignment_uniform", "step_size",
                                          "loss_before", "loss_after", "norm_update"};
    std::vector<std::string> header{"step", "position"};
    header.insert(header.end(), curves.begin(), curves.end());
    CsvFile f(out / "by_position.csv", header);
    for (const auto& st : a.at("steps")) {
      const json& bp = st.at("by_position");
      const size_t T = bp.at("count").size();
      for (size_t t = 0; t < T; ++t) {
        std::vector<json> r{st.at("index"), t};
        for (const auto& c : curves) r.push_back(bp.contains(c) && bp[c].is_array() ? bp[c][t] : json(nullptr));
        f.row(r);
      }
    }
    f.save();
  }
  out.commit();
}

}  // namespace metalm
