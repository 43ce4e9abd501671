// Hugging Face GPT-2 checkpoints <-> metalm: the pure mapping of configs and
// tensor names (no model here; train/hf_import.hpp builds and saves one).
//
// A Hugging Face GPT-2 directory holds config.json and model.safetensors (or
// shards listed in model.safetensors.index.json). Tensor names come in two
// layouts found in the wild: GPT2Model's ("wte.weight", "h.0.ln_1.weight",
// as in the original gpt2 upload) and GPT2LMHeadModel's ("transformer." in
// front of those, plus sometimes "lm_head.weight"). The four matrices of a
// block are Conv1D weights stored [in, out]; metalm uses torch Linear [out, in]:
//
//   Hugging Face (prefix omitted)      metalm                         layout
//   wte.weight        [V, d]           wte.weight                     same
//   wpe.weight        [P, d]           wpe.weight                     same
//   h.{l}.ln_1.{weight,bias}           blocks.{l}.ln_1.{weight,bias}  same
//   h.{l}.attn.c_attn.weight [d, 3d]   blocks.{l}.attn.c_attn.weight  transposed [3d, d]
//   h.{l}.attn.c_attn.bias   [3d]      blocks.{l}.attn.c_attn.bias    same
//   h.{l}.attn.c_proj.weight [d, d]    blocks.{l}.attn.c_proj.weight  transposed
//   h.{l}.ln_2.{weight,bias}           blocks.{l}.ln_2.{weight,bias}  same
//   h.{l}.mlp.c_fc.weight  [d, m]      blocks.{l}.mlp.c_fc.weight     transposed [m, d]
//   h.{l}.mlp.c_proj.weight [m, d]     blocks.{l}.mlp.c_proj.weight   transposed [d, m]
//   (and the .bias of each)            (same names)                   same
//   ln_f.{weight,bias}                 ln_f.{weight,bias}             same
//   lm_head.weight [V, d]              lm_head.weight (untied only)   same (nn.Linear)
//   h.{l}.attn.bias, .masked_bias      -- causal-mask buffers, ignored
//
// Config keys: n_embd -> d_model, n_head, n_layer, n_positions -> context,
// vocab_size, n_inner (null: 4 d) -> d_mlp, layer_norm_epsilon -> norm_eps,
// activation_function (gelu_new | gelu_pytorch_tanh | gelu_fast -> gelu_tanh,
// gelu -> gelu, relu -> relu), tie_word_embeddings -> tie_embeddings,
// embd_pdrop / attn_pdrop / resid_pdrop -> the dropouts, initializer_range ->
// init_std; fixed: pre-LN LayerNorm with biases, learned positions, softmax
// attention. Absent keys take Hugging Face's GPT2Config defaults. Values
// metalm cannot reproduce (scale_attn_weights false,
// scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn,
// add_cross_attention, another activation) and other architectures throw
// ConfigError naming the key or the architecture: never a silent mis-mapping.
#pragma once

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"

namespace metalm {

// Hugging Face's vocabulary size of the GPT-2 BPE (50,000 merges + 256 bytes
// + <|endoftext|>); a model of this size is recorded with the "gpt2" tokenizer.
constexpr int64_t kGpt2VocabSize = 50257;

// config.json -> a resolved ModelConfig. `origin` names the file in messages.
// Throws ConfigError (unsupported architecture, value or type).
ModelConfig hf_gpt2_model_config(const nlohmann::json& config, const std::string& origin);

// Throws ConfigError naming the key when `cfg` has no GPT-2 equivalent
// (rmsnorm, no biases, post-LN, rope/sinusoidal/no positions, linear
// attention, attention-only).
void require_gpt2_compatible(const ModelConfig& cfg);

// The config.json of a GPT2LMHeadModel equivalent to `cfg` (checked with
// require_gpt2_compatible). hf_gpt2_model_config(hf_gpt2_config_json(c)) == c.
nlohmann::json hf_gpt2_config_json(const ModelConfig& cfg);

// One parameter of a GPT-2 model under both naming schemes.
struct Gpt2TensorName {
  std::string metalm;             // "blocks.0.attn.c_attn.weight"
  std::string hf;                 // "h.0.attn.c_attn.weight" (no "transformer." prefix)
  std::vector<int64_t> hf_shape;  // as Hugging Face stores it
  bool conv1d = false;            // stored [in, out]: transposed between the two
};

// Every parameter of the GPT-2 model `cfg` describes (lm_head.weight only
// when untied), in model order. `cfg` must be resolved and GPT-2 compatible.
std::vector<Gpt2TensorName> gpt2_tensor_names(const ModelConfig& cfg);

struct HfGpt2Tensors {
  std::map<std::string, torch::Tensor> tensors;  // metalm names, torch layout, float32, contiguous
  std::string key_prefix;                         // "transformer." or ""
  std::set<std::string> dtypes;                   // stored dtypes of the parameters ("F32", "F16", ...)
  std::vector<std::string> ignored;               // mask buffers and a tied lm_head copy, as named in the file
};

// Renames and transposes Hugging Face tensors (as stored, either layout) into
// metalm's. Every expected tensor must be present with the shape the config
// implies and a floating dtype, and nothing unknown may remain; otherwise
// FormatError naming `origin`, the tensor (as named in the file) and what was
// expected. Strict like load_weights, so a mistake never reaches the model.
// Takes the map by value: pass it with std::move and each stored tensor is
// released once converted, so peak memory stays near one copy of the model.
HfGpt2Tensors hf_gpt2_to_metalm(std::map<std::string, torch::Tensor> hf, const ModelConfig& cfg,
                                const std::string& origin);

// metalm tensors -> a GPT2LMHeadModel state dict: "transformer." names,
// Conv1D layout, "lm_head.weight" only when untied (tied heads are not stored,
// as save_pretrained does). Missing tensors throw FormatError.
std::map<std::string, torch::Tensor> metalm_to_hf_gpt2(const std::map<std::string, torch::Tensor>& ours,
                                                       const ModelConfig& cfg);

struct HfGpt2Checkpoint {
  ModelConfig model;           // resolved
  nlohmann::json hf_config;    // config.json as read
  std::string architecture;    // "GPT2LMHeadModel" (or model_type when no architectures)
  HfGpt2Tensors weights;
  std::vector<std::string> files;  // the safetensors files read
  std::string tokenizer;       // "gpt2" when vocab_size == 50257, else ""
};

// Reads DIR/config.json and DIR/model.safetensors (or its shards). A missing
// directory or file throws IoError saying how to obtain GPT-2; a directory
// with only pytorch_model.bin says that safetensors is needed.
HfGpt2Checkpoint read_hf_gpt2(const std::string& dir);

}  // namespace metalm
