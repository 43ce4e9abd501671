#include "metalm/analysis/report.hpp"

#include <cmath>
#include <limits>

namespace metalm {
namespace {

using json = nlohmann::json;

double mean_of(const at::Tensor& t) { return t.defined() ? summarize(t).mean : std::numeric_limits<double>::quiet_NaN(); }

json summary_or_null(const at::Tensor& t) { return t.defined() ? to_json(summarize(t)) : json(nullptr); }

// Mean of the named per-position values over positions selected by `mask`.
json masked_means(const std::vector<std::pair<std::string, at::Tensor>>& fields, const at::Tensor& mask) {
  json out;
  out["count"] = mask.sum().item<int64_t>();
  for (const auto& [name, t] : fields)
    out[name] = t.defined() ? number(mean_of(t.masked_select(mask))) : json(nullptr);
  return out;
}

// {"name": [mean at position 0, 1, …, T-1], "count": [...]}; NaN (null) where
// no position was analysed.
json position_curves(const std::vector<std::pair<std::string, at::Tensor>>& fields, const at::Tensor& positions,
                     int64_t length) {
  json out;
  std::vector<int64_t> n = group_counts(positions, length);
  out["count"] = n;
  for (const auto& [name, t] : fields)
    out[name] = t.defined() ? numbers(group_means(t, positions, length)) : json(nullptr);
  return out;
}

// One entry per frequency bin: its count range, how many positions fell in
// it, and the mean of every field.
json frequency_groups(const std::vector<std::pair<std::string, at::Tensor>>& fields, const at::Tensor& tokens,
                      const FrequencyBins& bins) {
  const at::Tensor b = bins.bin_tokens(tokens);
  const std::vector<int64_t> n = group_counts(b, bins.bins());
  std::vector<std::vector<double>> means;
  for (const auto& f : fields) means.push_back(f.second.defined() ? group_means(f.second, b, bins.bins()) : std::vector<double>());
  json out = json::array();
  for (int64_t i = 0; i < bins.bins(); ++i) {
    json g{{"bin", i}, {"count_lo", bins.lower(i)}, {"count_hi", bins.upper(i)}, {"positions", n[static_cast<size_t>(i)]}};
    for (size_t f = 0; f < fields.size(); ++f)
      g[fields[f].first] = means[f].empty() ? json(nullptr) : number(means[f][static_cast<size_t>(i)]);
    out.push_back(std::move(g));
  }
  return out;
}

// Spearman correlation of per-position values with the training count of the
// given tokens (rank correlation: the same as with log-frequency).
double frequency_spearman(const at::Tensor& values, const at::Tensor& tokens, const FrequencyBins& bins) {
  const std::vector<double> v = to_vector(values);
  const std::vector<double> tok = to_vector(tokens);
  std::vector<double> counts(tok.size());
  for (size_t i = 0; i < tok.size(); ++i) counts[i] = static_cast<double>(bins.count_of(static_cast<int64_t>(tok[i])));
  return spearman(v, counts);
}

}  // namespace

json steps_to_json(const Trajectory& tr, const FrequencyBins* bins) {
  json steps = json::array();
  const at::Tensor pos0 = tr.positions.eq(0);
  const at::Tensor rest = tr.positions.gt(0);
  for (size_t k = 0; k < tr.steps.size(); ++k) {
    const StepRecord& st = tr.steps[k];
    json j;
    j["index"] = k;
    j["from"] = st.from;
    j["to"] = st.to;
    j["loss_before"] = number(mean_of(st.loss_before));
    j["loss_after"] = number(mean_of(st.loss_after));
    j["alignment"] = summary_or_null(st.alignment);
    j["alignment_random_target"] = summary_or_null(st.alignment_random);
    j["step_size"] = summary_or_null(st.step_size);
    j["step_size_random_target"] = summary_or_null(st.step_size_random);
    j["norm_before"] = summary_or_null(st.norm_before);
    j["norm_update"] = summary_or_null(st.norm_update);
    j["norm_grad"] = summary_or_null(st.norm_grad);
    j["relative_update"] = summary_or_null(st.norm_update / st.norm_before);
    j["first_order_decrease"] = number(mean_of(st.first_order_decrease));
    j["actual_decrease"] = number(mean_of(st.actual_decrease));
    j["fraction_decreased"] = number(mean_of(st.actual_decrease.gt(0).to(at::kDouble)));

    const std::vector<std::pair<std::string, at::Tensor>> fields{
        {"alignment", st.alignment},     {"alignment_random_target", st.alignment_random},
        {"step_size", st.step_size},     {"loss_before", st.loss_before},
        {"loss_after", st.loss_after},   {"norm_before", st.norm_before},
        {"norm_update", st.norm_update}};
    j["position_0"] = masked_means(fields, pos0);
    j["positions_after_0"] = masked_means(fields, rest);
    j["by_position"] = position_curves(fields, tr.positions, tr.length);
    if (bins && tr.current_token.defined())
      j["by_frequency"]["current"] = frequency_groups(fields, tr.current_token, *bins);
    if (bins && tr.target_token.defined())
      j["by_frequency"]["target"] = frequency_groups(fields, tr.target_token, *bins);
    steps.push_back(std::move(j));
  }
  return steps;
}

json states_to_json(const Trajectory& tr, const FrequencyBins* bins) {
  json states = json::array();
  for (size_t k = 0; k < tr.states.size(); ++k) {
    const StateRecord& s = tr.states[k];
    json j;
    j["index"] = k;
    j["site"] = s.site;
    j["loss"] = number(mean_of(s.loss));
    j["loss_summary"] = summary_or_null(s.loss);
    j["norm"] = summary_or_null(s.norm);
    j["norm_grad"] = summary_or_null(s.norm_grad);
    const json curves = position_curves({{"norm", s.norm}, {"loss", s.loss}}, tr.positions, tr.length);
    j["norm_by_position"] = curves["norm"];
    j["loss_by_position"] = curves["loss"];
    if (bins && tr.current_token.defined()) {
      j["norm_freq_spearman"]["current"] = number(frequency_spearman(s.norm, tr.current_token, *bins));
      j["norm_by_frequency"]["current"] = frequency_groups({{"norm", s.norm}, {"loss", s.loss}}, tr.current_token, *bins);
    }
    if (bins && tr.target_token.defined()) {
      j["norm_freq_spearman"]["target"] = number(frequency_spearman(s.norm, tr.target_token, *bins));
      j["norm_by_frequency"]["target"] = frequency_groups({{"norm", s.norm}, {"loss", s.loss}}, tr.target_token, *bins);
    }
    states.push_back(std::move(j));
  }
  return states;
}

json table_to_json(const at::Tensor& table, const FrequencyBins* bins) {
  at::NoGradGuard no_grad;
  const at::Tensor norms = table.detach().to(at::kDouble).norm(2, {1});  // [V, d] -> [V]
  json j;
  j["rows"] = table.size(0);
  j["norm"] = to_json(summarize(norms));
  if (bins) {
    const at::Tensor ids = at::arange(table.size(0), at::TensorOptions(at::kLong));
    j["norm_freq_spearman"] = number(frequency_spearman(norms, ids, *bins));
    j["by_frequency"] = frequency_groups({{"norm", norms}}, ids, *bins);
  }
  return j;
}

}  // namespace metalm
