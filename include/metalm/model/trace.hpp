// Per-layer representations captured during a forward pass.
//
// LibTorch modules have no forward hooks, so capture is explicit: the caller
// passes a CaptureRequest to CausalTransformer::forward and gets a Trace back.
// Site names follow TransformerLens (docs/design.md section 4); per block l:
//
//   embed, pos_embed          [B, T, d]  token / position embeddings (pos_embed only
//                                        for learned and sinusoidal positions)
//   blocks.l.resid_pre        [B, T, d]  input of block l (resid_pre[0] = embed + pos_embed,
//                                        after embedding dropout)
//   blocks.l.attn_out         [B, T, d]  what attention adds to the residual stream
//   blocks.l.resid_mid        [B, T, d]  resid_pre + attn_out
//   blocks.l.mlp_out          [B, T, d]  what the MLP adds (zeros when mlp = none)
//   blocks.l.resid_post       [B, T, d]  resid_mid + mlp_out = resid_pre[l+1]
//   blocks.l.attn_pattern     [B, H, T, T] attention weights (softmax output, or the
//                                        causal 1/(t+1)-scaled scores of linear attention)
//   final                     [B, T, d]  resid_post[L-1], before the final norm
//
// Tensors are stored as produced (detached views by default: no copies), so
// they must not be modified in place.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "metalm/config/config.hpp"

namespace metalm {

enum class Site { Embed, PosEmbed, ResidPre, AttnOut, ResidMid, MlpOut, ResidPost, Final, AttnPattern };

// "embed", "resid_pre", "attn_pattern", ... (the site part of a name).
const char* site_label(Site site);
// True for the per-block sites (those named "blocks.<l>.<label>").
bool site_is_per_layer(Site site);
// "embed", "final", "blocks.3.resid_pre". Throws Error when a per-layer site
// has no layer (or a global site has one).
std::string site_name(Site site, int64_t layer = -1);

// Which sites a forward pass records (CausalTransformer::forward(tokens,
// request, trace)), and whether they keep their autograd graph.
struct CaptureRequest {
  std::set<Site> sites;
  // false: stored tensors are detached (no autograd history is kept alive).
  // true: stored tensors stay in the graph, so gradients w.r.t. them or
  // through them can be taken (torch::autograd::grad(loss, {trace.at(...)})).
  bool keep_graph = false;

  bool wants(Site s) const { return sites.count(s) != 0; }

  // resid_pre, attn_out, resid_mid, mlp_out, resid_post, final.
  static CaptureRequest residual_stream();
  // Every site, attention patterns included.
  static CaptureRequest all();
};

// The sites one forward pass recorded, by typed site and block index
// (`trace.at(Site::ResidPre, 3)`) or by name (`trace.at("blocks.3.resid_pre")`).
// A forward pass with a request clears the trace first.
class Trace {
 public:
  // Throws Error naming the site when it was not captured.
  const torch::Tensor& at(Site site, int64_t layer = -1) const;
  // By name; throws Error when the name is not a site name, or not captured.
  const torch::Tensor& at(const std::string& name) const;
  // Whether the site was captured (false for a malformed name).
  bool has(Site site, int64_t layer = -1) const;
  bool has(const std::string& name) const;
  // Captured names in the order the forward pass produced them.
  std::vector<std::string> names() const;
  // Number of blocks of the model that filled this trace.
  int64_t n_layer() const { return n_layer_; }
  bool empty() const { return entries_.empty(); }

  // The inner trajectory of docs/design.md section 5: block granularity gives
  // [resid_pre[0], resid_post[0], ..., resid_post[L-1]] (L+1 states);
  // sublayer granularity interleaves resid_mid (2L+1 states). Needs the
  // corresponding sites captured.
  std::vector<torch::Tensor> trajectory(Granularity granularity = Granularity::Block) const;

  // Filled by the model (through TraceWriter): clear() empties the trace for
  // an n_layer model, put() stores (or replaces) one site's tensor.
  void clear(int64_t n_layer);
  void put(Site site, int64_t layer, torch::Tensor value);

 private:
  struct Entry {
    Site site;
    int64_t layer;
    torch::Tensor value;
  };
  std::vector<Entry> entries_;
  std::map<std::pair<int, int64_t>, std::size_t> index_;
  int64_t n_layer_ = 0;
};

// What the model's forward pass uses to record sites: a null pointer means no
// capture, so the plain forward pass pays one pointer test per site.
class TraceWriter {
 public:
  TraceWriter(const CaptureRequest& request, Trace& trace);
  bool wants(Site s) const { return (mask_ >> static_cast<unsigned>(s)) & 1u; }
  // Records `value` (detached unless keep_graph) if the site was requested.
  void put(Site site, int64_t layer, const torch::Tensor& value) const;
  Trace& trace() const { return *trace_; }

 private:
  unsigned mask_ = 0;
  bool keep_graph_ = false;
  Trace* trace_;
};

}  // namespace metalm
