#include "metalm/analysis/report.hpp"

#include <cmath>
#include <limits>
#include <string>

namespace metalm {
namespace {

using json = nlohmann::json;
using Fields = std::vector<std::pair<std::string, at::Tensor>>;

double mean_of(const at::Tensor& t) { return t.defined() ? summarize(t).mean : std::numeric_limits<double>::quiet_NaN(); }

// [lo, hi] of the mean of t (null without a bootstrap or a tensor).
json interval_of(const at::Tensor& t, const ClusterBootstrap* boot) {
  if (!boot || !t.defined()) return json(nullptr);
  const Interval ci = boot->mean_interval(t);
  return json::array({number(ci.lo), number(ci.hi)});
}

json summary_or_null(const at::Tensor& t, const ClusterBootstrap* boot) {
  if (!t.defined()) return json(nullptr);
  json j = to_json(summarize(t));
  if (boot) j["ci"] = interval_of(t, boot);
  return j;
}

// The kMean and kSummary aggregates of one statistic (trajectory.hpp), with
// the mean's interval when there is a bootstrap.
void put_aggregates(json& j, const std::string& key, unsigned aggregates, const at::Tensor& t,
                    const ClusterBootstrap* boot) {
  if (aggregates & kMean) {
    j[key] = number(mean_of(t));
    if (boot) j[key + "_ci"] = interval_of(t, boot);
  }
  if (aggregates & kSummary) j[(aggregates & kMean) ? key + "_summary" : key] = summary_or_null(t, boot);
}

// The gap alignment − alignment_c for every control, and which matched null
// comes closest (docs/design.md 5.6).
void put_gaps(json& j, const StepRecord& st, const ClusterBootstrap* boot) {
  json gaps = json::object();
  std::string strongest;
  double smallest = std::numeric_limits<double>::infinity();
  for (const auto& c : kControls) {
    const at::Tensor& control = st.*c.alignment;
    if (!st.alignment.defined() || !control.defined()) {
      gaps[c.name] = {{"mean", nullptr}, {"ci", nullptr}};  // every control keeps its key
      continue;
    }
    const at::Tensor gap = st.alignment - control;  // NaN where either is
    const double mean = mean_of(gap);
    gaps[c.name] = {{"mean", number(mean)}, {"ci", interval_of(gap, boot)}};
    if (c.matched && std::isfinite(mean) && mean < smallest) {
      smallest = mean;
      strongest = c.name;
    }
  }
  j["gaps"] = std::move(gaps);
  j["strongest_control"] = strongest.empty() ? json(nullptr) : json(strongest);
}

// The 2.5 % and 97.5 % quantiles of the permutation null's means.
json null_band(const StepRecord& st) {
  if (!st.null_sum.defined() || !st.null_count.defined()) return json(nullptr);
  const at::Tensor means = st.null_sum / st.null_count;  // 0/0: NaN, left out
  const std::vector<double> m = to_vector(means);
  return json::array({number(quantile(m, 0.025)), number(quantile(m, 0.975))});
}

// Mean of the named per-position values over positions selected by `mask`.
json masked_means(const Fields& fields, const at::Tensor& mask) {
  json out;
  out["count"] = mask.sum().item<int64_t>();
  for (const auto& [name, t] : fields)
    out[name] = t.defined() ? number(mean_of(t.masked_select(mask))) : json(nullptr);
  return out;
}

// {"name": [mean at position 0, 1, …, T-1], "count": [...]}; NaN (null) where
// no position was analysed.
json position_curves(const Fields& fields, const at::Tensor& positions, int64_t length) {
  json out;
  std::vector<int64_t> n = group_counts(positions, length);
  out["count"] = n;
  for (const auto& [name, t] : fields)
    out[name] = t.defined() ? numbers(group_means(t, positions, length)) : json(nullptr);
  return out;
}

// One entry per frequency bin: its count range, how many positions fell in
// it, and the mean of every field.
json frequency_groups(const Fields& fields, const at::Tensor& tokens, const FrequencyBins& bins) {
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

json steps_to_json(const Trajectory& tr, const FrequencyBins* bins, const ClusterBootstrap* boot) {
  json steps = json::array();
  const at::Tensor pos0 = tr.positions.eq(0);
  const at::Tensor rest = tr.positions.gt(0);
  for (size_t k = 0; k < tr.steps.size(); ++k) {
    const StepRecord& st = tr.steps[k];
    json j;
    j["index"] = k;
    j["from"] = st.from;
    j["to"] = st.to;
    Fields positional;
    for (const auto& stat : kStepStatistics) {
      const at::Tensor& t = st.*stat.member;
      put_aggregates(j, stat.key, stat.aggregates, t, boot);
      if (stat.aggregates & kPositional) positional.emplace_back(stat.key, t);
    }
    for (const auto& stat : kDerivedStepStatistics) put_aggregates(j, stat.key, stat.aggregates, stat.compute(st), boot);
    put_gaps(j, st, boot);
    j["null_band"] = null_band(st);
    j["position_0"] = masked_means(positional, pos0);
    j["positions_after_0"] = masked_means(positional, rest);
    j["by_position"] = position_curves(positional, tr.positions, tr.length);
    if (bins && tr.current_token.defined())
      j["by_frequency"]["current"] = frequency_groups(positional, tr.current_token, *bins);
    if (bins && tr.target_token.defined())
      j["by_frequency"]["target"] = frequency_groups(positional, tr.target_token, *bins);
    steps.push_back(std::move(j));
  }
  return steps;
}

json states_to_json(const Trajectory& tr, const FrequencyBins* bins, const ClusterBootstrap* boot) {
  const std::pair<const char*, const at::Tensor*> by_token[] = {{"current", &tr.current_token},
                                                                {"target", &tr.target_token}};
  json states = json::array();
  for (size_t k = 0; k < tr.states.size(); ++k) {
    const StateRecord& s = tr.states[k];
    json j;
    j["index"] = k;
    j["site"] = s.site;
    Fields positional;
    for (const auto& stat : kStateStatistics) {
      const at::Tensor& t = s.*stat.member;
      put_aggregates(j, stat.key, stat.aggregates, t, boot);
      if (stat.aggregates & kPositional) positional.emplace_back(stat.key, t);
      for (const auto& [which, tokens] : by_token)
        if ((stat.aggregates & kFreqSpearman) && bins && tokens->defined())
          j[std::string(stat.key) + "_freq_spearman"][which] =
              t.defined() ? number(frequency_spearman(t, *tokens, *bins)) : json(nullptr);
    }
    const json curves = position_curves(positional, tr.positions, tr.length);
    for (const auto& [key, t] : positional) j[key + "_by_position"] = curves[key];
    // One group list holds every positional statistic of the state; its key
    // is historical (it held the norm first).
    for (const auto& [which, tokens] : by_token)
      if (bins && tokens->defined()) j["norm_by_frequency"][which] = frequency_groups(positional, *tokens, *bins);
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

ClusterBootstrap sequence_bootstrap(const Trajectory& tr, const AnalysisConfig& analysis) {
  const at::Tensor sequence = tr.rows.defined() ? at::div(tr.rows, tr.length, "floor") : at::zeros({0}, at::kLong);
  return ClusterBootstrap(sequence, analysis.bootstrap, static_cast<uint64_t>(analysis.seed));
}

}  // namespace metalm
