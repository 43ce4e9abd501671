// Small model configurations shared by the tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"

namespace metalm::testing {

// A model of these sizes, every other key at its default: what the tests'
// small models differ in. Not resolved (d_mlp stays 0 until resolve()).
inline ModelConfig small_config(int64_t vocab_size, int64_t context, int64_t d_model, int64_t n_layer,
                                int64_t n_head = 2) {
  ModelConfig c;
  c.vocab_size = vocab_size;
  c.context = context;
  c.d_model = d_model;
  c.n_layer = n_layer;
  c.n_head = n_head;
  return c;
}

inline ModelConfig tiny_config() {
  ModelConfig c = small_config(19, 16, 16, 3);
  c.d_mlp = 24;
  c.init_std = 0.3;  // large enough that attention is far from uniform
  return c;
}

struct NamedConfig {
  std::string name;
  ModelConfig config;
};

// Every attention x position kind, both norm positions, every norm and MLP kind.
inline std::vector<NamedConfig> config_grid() {
  std::vector<NamedConfig> out;
  const PositionKind positions[] = {PositionKind::Learned, PositionKind::Sinusoidal, PositionKind::Rope,
                                    PositionKind::None};
  const AttentionKind attentions[] = {AttentionKind::Softmax, AttentionKind::Linear};
  for (AttentionKind a : attentions)
    for (PositionKind p : positions)
      for (NormPosition np : {NormPosition::Pre, NormPosition::Post}) {
        ModelConfig c = tiny_config();
        c.attention = a;
        c.position = p;
        c.norm_position = np;
        out.push_back({to_string(a) + "_" + to_string(p) + "_" + to_string(np), c});
      }
  ModelConfig c = tiny_config();
  c.norm = NormKind::RmsNorm;
  c.mlp = MlpKind::GeluTanh;
  c.bias = false;
  c.tie_embeddings = false;
  out.push_back({"rmsnorm_gelu_tanh_untied", c});
  c = tiny_config();
  c.norm = NormKind::None;
  c.mlp = MlpKind::Relu;
  out.push_back({"no_norm_relu", c});
  c = tiny_config();
  c.mlp = MlpKind::None;
  out.push_back({"attention_only", c});
  c.norm_position = NormPosition::Post;
  out.push_back({"attention_only_post", c});
  return out;
}

}  // namespace metalm::testing
