#include "metalm/io/hf_gpt2.hpp"

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <sstream>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/io/safetensors.hpp"

namespace metalm {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

const char* const kPrefix = "transformer.";
std::string how_to_get(const std::string& dir) {
  return "get GPT-2 with `huggingface-cli download gpt2 config.json model.safetensors --local-dir " + dir +
         "` on a machine with internet";
}

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

// ---- config.json -------------------------------------------------------------

[[noreturn]] void config_error(const std::string& origin, const std::string& key, const std::string& what) {
  throw ConfigError(origin + ": " + key + " " + what);
}

int64_t get_int(const json& j, const std::string& origin, const char* key, int64_t fallback, int64_t min) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number_integer()) config_error(origin, key, "must be an integer, got " + json_excerpt(v));
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    config_error(origin, key, "is out of range, got " + json_excerpt(v));
  const int64_t n = v.get<int64_t>();
  if (n < min) config_error(origin, key, "must be at least " + std::to_string(min) + ", got " + json_excerpt(v));
  return n;
}

double get_double(const json& j, const std::string& origin, const char* key, double fallback) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_number()) config_error(origin, key, "must be a number, got " + json_excerpt(v));
  return v.get<double>();
}

bool get_bool(const json& j, const std::string& origin, const char* key, bool fallback) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  if (!v.is_boolean()) config_error(origin, key, "must be true or false, got " + json_excerpt(v));
  return v.get<bool>();
}

// Accepts GPT-2 configs only, naming whatever else was given.
std::string check_architecture(const json& j, const std::string& origin) {
  const std::string model_type = j.contains("model_type") && j["model_type"].is_string()
                                     ? j["model_type"].get<std::string>() : std::string();
  std::vector<std::string> archs;
  if (j.contains("architectures") && j["architectures"].is_array())
    for (const json& a : j["architectures"])
      if (a.is_string()) archs.push_back(a.get<std::string>());
  const std::string supported = "metalm imports GPT-2 checkpoints only (GPT2LMHeadModel or GPT2Model, model_type gpt2)";
  for (const auto& a : archs)
    if (a != "GPT2LMHeadModel" && a != "GPT2Model")
      throw ConfigError(origin + ": architecture " + excerpt(a) +
                        (model_type.empty() ? std::string() : " (model_type " + excerpt(model_type) + ")") +
                        " is not supported: " + supported);
  if (!model_type.empty() && model_type != "gpt2")
    throw ConfigError(origin + ": model_type " + excerpt(model_type) + " is not supported: " + supported);
  if (model_type.empty() && archs.empty())
    throw ConfigError(origin + ": neither \"architectures\" nor \"model_type\" given: not a Hugging Face "
                      "GPT-2 config.json");
  return archs.empty() ? model_type : archs.front();
}

MlpKind activation(const json& j, const std::string& origin) {
  if (!j.contains("activation_function")) return MlpKind::GeluTanh;  // GPT2Config default: gelu_new
  const json& v = j.at("activation_function");
  const std::string a = excerpt(v.is_string() ? v.get<std::string>() : v.dump());
  // gelu_new, gelu_pytorch_tanh and gelu_fast are the same tanh approximation.
  if (a == "gelu_new" || a == "gelu_pytorch_tanh" || a == "gelu_fast") return MlpKind::GeluTanh;
  if (a == "gelu") return MlpKind::Gelu;
  if (a == "relu") return MlpKind::Relu;
  config_error(origin, "activation_function",
               "\"" + a + "\" is not supported (metalm maps gelu_new, gelu_pytorch_tanh, gelu_fast, gelu and relu)");
}

std::string config_summary(const ModelConfig& c) {
  return "config.json: n_embd=" + std::to_string(c.d_model) + ", n_layer=" + std::to_string(c.n_layer) +
         ", n_positions=" + std::to_string(c.context) + ", vocab_size=" + std::to_string(c.vocab_size) +
         ", MLP width " + std::to_string(c.d_mlp);
}

// The path of a shard named by the index, confined to the model folder: a
// relative path without "..", which does not leave the folder through a
// symlink either (an index is data, and may come from anywhere).
std::string shard_path(const fs::path& root, const std::string& file, const std::string& where) {
  const fs::path rel(file);
  auto refuse = [&](const std::string& why) {
    throw FormatError(where + " names shard \"" + excerpt(file) + "\": " + why);
  };
  if (file.empty()) refuse("an empty file name");
  if (rel.has_root_path()) refuse("an absolute path; shards must be inside the model folder");
  for (const auto& part : rel)
    if (part == "..") refuse("a path with \"..\"; shards must be inside the model folder");
  const fs::path full = root / rel;
  std::error_code ec;
  const fs::path real = fs::canonical(full, ec);
  if (!ec) {  // a missing shard is reported when it is read
    const fs::path real_root = fs::canonical(root);
    const auto mismatch = std::mismatch(real_root.begin(), real_root.end(), real.begin(), real.end());
    if (mismatch.first != real_root.end())
      refuse("a symlink to " + excerpt(real.string()) + ", outside the model folder " + real_root.string());
  }
  return full.string();
}

// h.<l>.attn.bias / h.<l>.attn.masked_bias: causal-mask buffers, not parameters.
bool is_mask_buffer(const std::string& name) {
  if (!starts_with(name, "h.")) return false;
  const auto dot = name.find('.', 2);
  if (dot == std::string::npos || dot == 2) return false;
  if (!std::all_of(name.begin() + 2, name.begin() + static_cast<std::ptrdiff_t>(dot), ::isdigit)) return false;
  const std::string rest = name.substr(dot + 1);
  return rest == "attn.bias" || rest == "attn.masked_bias";
}

// The layer index of "h.<l>.*", or -1.
int64_t layer_of(const std::string& name) {
  if (!starts_with(name, "h.")) return -1;
  const auto dot = name.find('.', 2);
  if (dot == std::string::npos || dot == 2) return -1;
  const std::string digits = name.substr(2, dot - 2);
  if (!std::all_of(digits.begin(), digits.end(), ::isdigit) || digits.size() > 9) return -1;
  return std::stoll(digits);
}

}  // namespace

ModelConfig hf_gpt2_model_config(const json& j, const std::string& origin) {
  if (!j.is_object()) throw ConfigError(origin + ": not a JSON object");
  check_architecture(j, origin);
  if (!get_bool(j, origin, "scale_attn_weights", true))
    config_error(origin, "scale_attn_weights", "= false (no 1/sqrt(head_dim) scaling) is not supported");
  if (get_bool(j, origin, "scale_attn_by_inverse_layer_idx", false))
    config_error(origin, "scale_attn_by_inverse_layer_idx", "= true is not supported (metalm does not scale "
                 "attention by 1/(layer+1))");
  if (get_bool(j, origin, "reorder_and_upcast_attn", false))
    config_error(origin, "reorder_and_upcast_attn", "= true is not supported");
  if (get_bool(j, origin, "add_cross_attention", false))
    config_error(origin, "add_cross_attention", "= true is not supported (decoder-only models only)");

  ModelConfig c;  // GPT2Config's defaults where a key is absent
  c.vocab_size = get_int(j, origin, "vocab_size", kGpt2VocabSize, 1);
  c.context = get_int(j, origin, "n_positions", 1024, 1);
  c.d_model = get_int(j, origin, "n_embd", 768, 1);
  c.n_layer = get_int(j, origin, "n_layer", 12, 1);
  c.n_head = get_int(j, origin, "n_head", 12, 1);
  if (c.d_model % c.n_head != 0)
    config_error(origin, "n_embd", "= " + std::to_string(c.d_model) + " must be divisible by n_head = " +
                                       std::to_string(c.n_head));
  c.d_mlp = (j.contains("n_inner") && !j["n_inner"].is_null()) ? get_int(j, origin, "n_inner", 0, 1) : 0;
  c.norm = NormKind::LayerNorm;
  c.norm_position = NormPosition::Pre;
  c.position = PositionKind::Learned;
  c.attention = AttentionKind::Softmax;
  c.mlp = activation(j, origin);
  c.bias = true;
  c.tie_embeddings = get_bool(j, origin, "tie_word_embeddings", true);
  c.embd_dropout = get_double(j, origin, "embd_pdrop", 0.1);
  c.attn_dropout = get_double(j, origin, "attn_pdrop", 0.1);
  c.resid_dropout = get_double(j, origin, "resid_pdrop", 0.1);
  c.norm_eps = get_double(j, origin, "layer_norm_epsilon", 1e-5);
  c.init_std = get_double(j, origin, "initializer_range", 0.02);
  try {
    resolve(c);
  } catch (const ConfigError& e) {
    throw ConfigError(origin + ": " + e.what() + " (metalm's name for the Hugging Face key)");
  }
  return c;
}

void require_gpt2_compatible(const ModelConfig& c) {
  auto need = [](bool ok, const std::string& key, const std::string& value, const std::string& want) {
    if (!ok)
      throw ConfigError("model." + key + " = " + value + " has no GPT-2 equivalent (GPT-2 needs " + want + ")");
  };
  need(c.norm == NormKind::LayerNorm, "norm", to_string(c.norm), "layernorm");
  need(c.bias, "bias", "false", "biases");
  need(c.norm_position == NormPosition::Pre, "norm_position", to_string(c.norm_position), "pre");
  need(c.position == PositionKind::Learned, "position", to_string(c.position), "learned");
  need(c.attention == AttentionKind::Softmax, "attention", to_string(c.attention), "softmax");
  need(c.mlp != MlpKind::None, "mlp", to_string(c.mlp), "an MLP: gelu_tanh, gelu or relu");
}

json hf_gpt2_config_json(const ModelConfig& cfg) {
  ModelConfig c = cfg;
  resolve(c);
  require_gpt2_compatible(c);
  const char* act = c.mlp == MlpKind::GeluTanh ? "gelu_new" : c.mlp == MlpKind::Gelu ? "gelu" : "relu";
  json j = {
      {"architectures", {"GPT2LMHeadModel"}},
      {"model_type", "gpt2"},
      {"activation_function", act},
      {"vocab_size", c.vocab_size},
      {"n_positions", c.context},
      {"n_ctx", c.context},
      {"n_embd", c.d_model},
      {"n_layer", c.n_layer},
      {"n_head", c.n_head},
      {"n_inner", c.d_mlp == 4 * c.d_model ? json(nullptr) : json(c.d_mlp)},
      {"layer_norm_epsilon", c.norm_eps},
      {"initializer_range", c.init_std},
      {"embd_pdrop", c.embd_dropout},
      {"attn_pdrop", c.attn_dropout},
      {"resid_pdrop", c.resid_dropout},
      {"scale_attn_weights", true},
      {"scale_attn_by_inverse_layer_idx", false},
      {"reorder_and_upcast_attn", false},
      {"tie_word_embeddings", c.tie_embeddings},
      {"torch_dtype", "float32"},
  };
  if (c.vocab_size == kGpt2VocabSize) {
    j["bos_token_id"] = kGpt2VocabSize - 1;  // <|endoftext|>
    j["eos_token_id"] = kGpt2VocabSize - 1;
  }
  return j;
}

std::vector<Gpt2TensorName> gpt2_tensor_names(const ModelConfig& c) {
  require_gpt2_compatible(c);
  const int64_t d = c.d_model, m = c.d_mlp, V = c.vocab_size;
  std::vector<Gpt2TensorName> out;
  auto add = [&](const std::string& ours, const std::string& hf, std::vector<int64_t> shape, bool conv1d) {
    out.push_back({ours, hf, std::move(shape), conv1d});
  };
  add("wte.weight", "wte.weight", {V, d}, false);
  add("wpe.weight", "wpe.weight", {c.context, d}, false);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blocks." + std::to_string(l) + ".", h = "h." + std::to_string(l) + ".";
    add(b + "ln_1.weight", h + "ln_1.weight", {d}, false);
    add(b + "ln_1.bias", h + "ln_1.bias", {d}, false);
    add(b + "attn.c_attn.weight", h + "attn.c_attn.weight", {d, 3 * d}, true);  // Conv1D [in, out]
    add(b + "attn.c_attn.bias", h + "attn.c_attn.bias", {3 * d}, false);
    add(b + "attn.c_proj.weight", h + "attn.c_proj.weight", {d, d}, true);
    add(b + "attn.c_proj.bias", h + "attn.c_proj.bias", {d}, false);
    add(b + "ln_2.weight", h + "ln_2.weight", {d}, false);
    add(b + "ln_2.bias", h + "ln_2.bias", {d}, false);
    add(b + "mlp.c_fc.weight", h + "mlp.c_fc.weight", {d, m}, true);
    add(b + "mlp.c_fc.bias", h + "mlp.c_fc.bias", {m}, false);
    add(b + "mlp.c_proj.weight", h + "mlp.c_proj.weight", {m, d}, true);
    add(b + "mlp.c_proj.bias", h + "mlp.c_proj.bias", {d}, false);
  }
  add("ln_f.weight", "ln_f.weight", {d}, false);
  add("ln_f.bias", "ln_f.bias", {d}, false);
  if (!c.tie_embeddings) add("lm_head.weight", "lm_head.weight", {V, d}, false);  // nn.Linear: [out, in]
  return out;
}

HfGpt2Tensors hf_gpt2_to_metalm(std::map<std::string, torch::Tensor> hf, const ModelConfig& cfg,
                                const std::string& origin) {
  const auto names = gpt2_tensor_names(cfg);
  std::map<std::string, const Gpt2TensorName*> by_hf;
  for (const auto& n : names) by_hf[n.hf] = &n;

  HfGpt2Tensors out;
  for (const auto& [key, t] : hf)
    if (starts_with(key, kPrefix)) out.key_prefix = kPrefix;
  // The name a parameter has in this file (for messages).
  auto file_name = [&](const std::string& hf_name) {
    return hf_name == "lm_head.weight" ? hf_name : out.key_prefix + hf_name;
  };

  torch::Tensor tied_head;  // a stored copy of a tied lm_head, checked against wte below
  for (auto& [key, t] : hf) {
    std::string name = key;
    if (!out.key_prefix.empty()) {
      if (starts_with(key, kPrefix))
        name = key.substr(out.key_prefix.size());
      else if (key != "lm_head.weight")
        throw FormatError(origin + ": tensor '" + excerpt(key) + "' lacks the \"transformer.\" prefix the other tensors "
                          "have (mixed key layouts)");
    }
    if (is_mask_buffer(name)) {
      out.ignored.push_back(key);
      continue;
    }
    if (name == "lm_head.weight" && cfg.tie_embeddings) {
      if (t.sizes() != at::IntArrayRef{cfg.vocab_size, cfg.d_model})
        throw FormatError(origin + ": tensor '" + key + "' has shape " + shape_str(t.sizes()) + ", expected [" +
                          std::to_string(cfg.vocab_size) + ", " + std::to_string(cfg.d_model) + "] (" +
                          config_summary(cfg) + ")");
      tied_head = t;
      out.ignored.push_back(key);
      continue;
    }
    const auto it = by_hf.find(name);
    if (it == by_hf.end()) {
      const int64_t layer = layer_of(name);
      if (layer >= cfg.n_layer)
        throw FormatError(origin + ": unexpected tensor '" + excerpt(key) + "': layer " + std::to_string(layer) +
                          ", but config.json has n_layer = " + std::to_string(cfg.n_layer));
      throw FormatError(origin + ": unexpected tensor '" + excerpt(key) + "' (shape " + shape_str(t.sizes()) +
                        "): not a parameter of a GPT-2 model");
    }
    const Gpt2TensorName& n = *it->second;
    if (!at::isFloatingType(t.scalar_type()))
      throw FormatError(origin + ": tensor '" + key + "' has dtype " + safetensors_dtype_name(t.scalar_type()) +
                        ", expected a floating-point one (F32, F16 or BF16)");
    if (t.sizes() != at::IntArrayRef(n.hf_shape))
      throw FormatError(origin + ": tensor '" + key + "' has shape " + shape_str(t.sizes()) + ", expected " +
                        shape_str(n.hf_shape) + (n.conv1d ? " (Conv1D [in, out])" : "") + " from " +
                        config_summary(cfg) + "; do config.json and the weights belong together?");
    out.dtypes.insert(safetensors_dtype_name(t.scalar_type()));
    torch::Tensor w = t.to(at::kFloat);
    if (n.conv1d) w = w.t();  // [in, out] -> torch Linear [out, in]
    out.tensors[n.metalm] = w.contiguous();
    t = torch::Tensor();  // drop the stored copy now: peak memory stays near one model
  }
  for (const auto& n : names)
    if (out.tensors.count(n.metalm) == 0)
      throw FormatError(origin + ": missing tensor '" + file_name(n.hf) + "' (expected shape " +
                        shape_str(n.hf_shape) + " from " + config_summary(cfg) + ")");
  if (tied_head.defined() && !at::equal(tied_head.to(at::kFloat), out.tensors.at("wte.weight")))
    spdlog::warn("{}: lm_head.weight differs from wte.weight but config.json ties them "
                 "(tie_word_embeddings); using wte.weight, as transformers does", origin);
  return out;
}

std::map<std::string, torch::Tensor> metalm_to_hf_gpt2(const std::map<std::string, torch::Tensor>& ours,
                                                       const ModelConfig& cfg) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& n : gpt2_tensor_names(cfg)) {
    const auto it = ours.find(n.metalm);
    if (it == ours.end()) throw FormatError("export: missing tensor '" + n.metalm + "'");
    const torch::Tensor t = it->second.detach();
    out[n.hf == "lm_head.weight" ? n.hf : kPrefix + n.hf] = n.conv1d ? t.t().contiguous() : t;
  }
  return out;
}

HfGpt2Checkpoint read_hf_gpt2(const std::string& dir) {
  if (!fs::is_directory(dir))
    throw IoError(dir + ": no such directory; " + how_to_get(dir));
  HfGpt2Checkpoint ck;
  const fs::path root(dir);
  const std::string config_path = (root / "config.json").string();
  if (!fs::exists(config_path))
    throw IoError(config_path + ": not found (a Hugging Face checkpoint directory holds config.json and "
                  "model.safetensors)");
  ck.hf_config = read_json_file(config_path);
  ck.architecture = check_architecture(ck.hf_config, config_path);
  ck.model = hf_gpt2_model_config(ck.hf_config, config_path);

  const fs::path single = root / "model.safetensors", index = root / "model.safetensors.index.json";
  std::string origin;
  std::map<std::string, std::string> shard_of;  // tensor -> the shard the index puts it in
  if (fs::exists(single)) {
    ck.files.push_back(single.string());
    origin = single.string();
  } else if (fs::exists(index)) {
    const json j = read_json_file(index.string(), JsonError::Format);
    if (!j.contains("weight_map") || !j["weight_map"].is_object())
      throw FormatError(index.string() + ": no \"weight_map\" object");
    std::set<std::string> shards;
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string())
        throw FormatError(index.string() + ": weight_map entry '" + excerpt(name) + "' is not a file name");
      const std::string shard = shard_path(root, file.get<std::string>(), index.string() + ": weight_map entry '" +
                                                                              excerpt(name) + "'");
      shards.insert(shard);
      shard_of.emplace(name, shard);
    }
    ck.files.assign(shards.begin(), shards.end());
    origin = index.string();
  } else if (fs::exists(root / "pytorch_model.bin")) {
    throw IoError(dir + ": has pytorch_model.bin but no model.safetensors; metalm reads safetensors only "
                  "(download model.safetensors, or convert the .bin with safetensors.torch.save_file)");
  } else {
    throw IoError(single.string() + ": not found; " + how_to_get(dir));
  }

  // The index and the shards must agree tensor by tensor: a tensor the index
  // places in another shard, or does not list, or lists in a shard that does
  // not hold it, leaves it unclear which copy (if any) is meant.
  std::map<std::string, torch::Tensor> all;
  for (const auto& file : ck.files) {
    SafeTensorsFile f = read_safetensors(file);
    for (auto& [name, t] : f.tensors) {
      if (!shard_of.empty()) {
        const auto it = shard_of.find(name);
        if (it == shard_of.end())
          throw FormatError(file + ": holds tensor '" + excerpt(name) + "', which " + index.string() +
                            " does not list");
        if (it->second != file)
          throw FormatError(file + ": holds tensor '" + excerpt(name) + "', which " + index.string() +
                            " places in " + it->second);
      }
      if (!all.emplace(name, std::move(t)).second)
        throw FormatError(file + ": tensor '" + excerpt(name) + "' is also in another shard");
    }
  }
  for (const auto& [name, file] : shard_of)
    if (all.count(name) == 0)
      throw FormatError(index.string() + ": weight_map places tensor '" + excerpt(name) + "' in " + file +
                        ", which does not hold it");
  ck.weights = hf_gpt2_to_metalm(std::move(all), ck.model, origin);
  ck.tokenizer = ck.model.vocab_size == kGpt2VocabSize ? "gpt2" : "";
  return ck;
}

}  // namespace metalm
