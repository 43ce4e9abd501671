#include "metalm/model/trace.hpp"

#include <cstdlib>

#include "metalm/core/error.hpp"

namespace metalm {

namespace {

constexpr Site kAllSites[] = {Site::Embed,  Site::PosEmbed,  Site::ResidPre, Site::AttnOut,    Site::ResidMid,
                              Site::MlpOut, Site::ResidPost, Site::Final,    Site::AttnPattern};

std::pair<int, int64_t> key(Site s, int64_t layer) { return {static_cast<int>(s), layer}; }

// Parses "embed" or "blocks.3.resid_pre"; returns false for anything else.
bool parse_name(const std::string& name, Site& site, int64_t& layer) {
  const std::string prefix = "blocks.";
  std::string label = name;
  layer = -1;
  if (name.rfind(prefix, 0) == 0) {
    const std::size_t dot = name.find('.', prefix.size());
    if (dot == std::string::npos || dot == prefix.size()) return false;
    const std::string digits = name.substr(prefix.size(), dot - prefix.size());
    if (digits.find_first_not_of("0123456789") != std::string::npos) return false;
    layer = std::strtoll(digits.c_str(), nullptr, 10);
    label = name.substr(dot + 1);
  }
  for (Site s : kAllSites)
    if (label == site_label(s) && site_is_per_layer(s) == (layer >= 0)) {
      site = s;
      return true;
    }
  return false;
}

}  // namespace

const char* site_label(Site site) {
  switch (site) {
    case Site::Embed: return "embed";
    case Site::PosEmbed: return "pos_embed";
    case Site::ResidPre: return "resid_pre";
    case Site::AttnOut: return "attn_out";
    case Site::ResidMid: return "resid_mid";
    case Site::MlpOut: return "mlp_out";
    case Site::ResidPost: return "resid_post";
    case Site::Final: return "final";
    case Site::AttnPattern: return "attn_pattern";
  }
  return "?";
}

bool site_is_per_layer(Site site) {
  return site != Site::Embed && site != Site::PosEmbed && site != Site::Final;
}

std::string site_name(Site site, int64_t layer) {
  if (site_is_per_layer(site) != (layer >= 0))
    throw Error(std::string("site '") + site_label(site) +
                (layer >= 0 ? "' takes no layer index" : "' needs a layer index"));
  if (layer < 0) return site_label(site);
  return "blocks." + std::to_string(layer) + "." + site_label(site);
}

CaptureRequest CaptureRequest::residual_stream() {
  CaptureRequest r;
  r.sites = {Site::ResidPre, Site::AttnOut, Site::ResidMid, Site::MlpOut, Site::ResidPost, Site::Final};
  return r;
}

CaptureRequest CaptureRequest::all() {
  CaptureRequest r;
  r.sites.insert(std::begin(kAllSites), std::end(kAllSites));
  return r;
}

const torch::Tensor& Trace::at(Site site, int64_t layer) const {
  const auto it = index_.find(key(site, layer));
  if (it == index_.end())
    throw Error("trace has no site '" + site_name(site, layer) + "' (not requested, or not in this model)");
  return entries_[it->second].value;
}

const torch::Tensor& Trace::at(const std::string& name) const {
  Site site;
  int64_t layer;
  if (!parse_name(name, site, layer)) throw Error("'" + name + "' is not a site name (e.g. blocks.0.resid_pre)");
  return at(site, layer);
}

bool Trace::has(Site site, int64_t layer) const { return index_.count(key(site, layer)) != 0; }

bool Trace::has(const std::string& name) const {
  Site site;
  int64_t layer;
  return parse_name(name, site, layer) && has(site, layer);
}

std::vector<std::string> Trace::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(site_name(e.site, e.layer));
  return out;
}

std::vector<torch::Tensor> Trace::trajectory(Granularity granularity) const {
  const bool sublayer = granularity == Granularity::Sublayer;
  std::vector<torch::Tensor> states;
  states.push_back(at(Site::ResidPre, 0));
  for (int64_t l = 0; l < n_layer_; ++l) {
    if (sublayer) states.push_back(at(Site::ResidMid, l));
    states.push_back(at(Site::ResidPost, l));
  }
  return states;
}

void Trace::clear(int64_t n_layer) {
  entries_.clear();
  index_.clear();
  n_layer_ = n_layer;
}

void Trace::put(Site site, int64_t layer, torch::Tensor value) {
  const auto k = key(site, layer);
  const auto it = index_.find(k);
  if (it != index_.end()) {
    entries_[it->second].value = std::move(value);
    return;
  }
  index_.emplace(k, entries_.size());
  entries_.push_back({site, layer, std::move(value)});
}

TraceWriter::TraceWriter(const CaptureRequest& request, Trace& trace)
    : keep_graph_(request.keep_graph), trace_(&trace) {
  for (Site s : request.sites) mask_ |= 1u << static_cast<unsigned>(s);
}

void TraceWriter::put(Site site, int64_t layer, const torch::Tensor& value) const {
  if (!wants(site)) return;
  trace_->put(site, layer, keep_graph_ ? value : value.detach());
}

}  // namespace metalm
