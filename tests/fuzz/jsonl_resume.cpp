// Fuzz target: what `train --resume` keeps of a run's metrics.jsonl or
// analysis.jsonl (jsonl_lines_to_keep). The first byte picks the
// checkpoint's step (0 to 7) and whether the log's records are told apart
// from other lines; the rest is the log. What it keeps is a prefix-ordered
// selection of the input's own lines, each a JSON object with an integer
// "step", and everything it drops is a record after the step or a cut-off
// last line: never a line of the user's.
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz_util.hpp"
#include "metalm/config/json.hpp"
#include "metalm/train/jsonl_log.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  if (size == 0) return 0;
  const int64_t keep = data[0] & 7;
  JsonlRecordTest is_record;
  if (data[0] & 8)
    is_record = [](const nlohmann::json& j) { return j.value("event", nlohmann::json()) == "train"; };
  const std::string_view text = fuzz::as_text(data + 1, size - 1);
  fuzz::expect_errors([&] {
    std::size_t torn = 0;
    const std::string kept = jsonl_lines_to_keep(text, "metrics.jsonl", keep, is_record, &torn);
    fuzz::require(kept.empty() || kept.back() == '\n', "the kept lines end in a newline");
    // Walk the input's lines: each kept line is the next input line that is
    // not dropped, and each dropped one is a record after `keep` or the torn tail.
    std::string_view rest = text, out = kept;
    while (!rest.empty()) {
      const std::size_t end = rest.find('\n');
      const std::string_view line = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
      const bool last_unterminated = end == std::string_view::npos;
      nlohmann::json j;
      try {
        j = parse_json(std::string(line), "line", JsonError::Format);
      } catch (const FormatError&) {
        fuzz::require(last_unterminated && torn == line.size(), "only a cut-off last line is dropped unparsed");
        continue;
      }
      fuzz::require(j.is_object() && j.contains("step") && j["step"].is_number_integer(),
                    "every line it accepts has an integer step");
      if (j["step"].get<int64_t>() <= keep) {
        fuzz::require(out.substr(0, line.size() + 1) == std::string(line) + '\n', "kept lines come in order");
        out.remove_prefix(line.size() + 1);
      } else {
        fuzz::require(!is_record || is_record(j), "a line after the step is dropped only if it is a record");
      }
    }
    fuzz::require(out.empty(), "nothing is kept that was not in the input");
  });
  return 0;
}
