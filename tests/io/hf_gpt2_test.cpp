// The Hugging Face GPT-2 mapping on its own: config.json keys, tensor renames
// and transposes in both key layouts, and a clear error (naming the tensor or
// the key) for every malformed input. The forward-pass golden test lives in
// tests/train/import_hf_test.cpp (it needs the model).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/io/hf_gpt2.hpp"
#include "metalm/io/safetensors.hpp"
#include "support/temp_dir.hpp"

namespace metalm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kGoldenDir = std::string(METALM_SOURCE_DIR) + "/tests/golden/hf_gpt2";

json tiny_config() {
  return {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"activation_function", "gelu_new"},
          {"n_embd", 8}, {"n_head", 2}, {"n_layer", 2}, {"n_positions", 6}, {"vocab_size", 11},
          {"layer_norm_epsilon", 1e-5}, {"n_inner", nullptr}, {"use_cache", true}};
}

// Random tensors named and shaped as Hugging Face stores them for `cfg`.
std::map<std::string, torch::Tensor> hf_tensors(const ModelConfig& cfg, const std::string& prefix, bool buffers) {
  torch::manual_seed(7);
  std::map<std::string, torch::Tensor> t;
  for (const auto& n : gpt2_tensor_names(cfg))
    t[n.hf == "lm_head.weight" ? n.hf : prefix + n.hf] = torch::randn(n.hf_shape);
  if (buffers)
    for (int64_t l = 0; l < cfg.n_layer; ++l) {
      const std::string h = prefix + "h." + std::to_string(l) + ".attn.";
      t[h + "bias"] = torch::ones({1, 1, cfg.context, cfg.context}).tril();
      t[h + "masked_bias"] = torch::tensor(-1e4);
    }
  return t;
}

using test::TempDir;

void write_dir(const TempDir& dir, const json& config, const std::map<std::string, torch::Tensor>& tensors) {
  std::ofstream(dir / "config.json") << config.dump(2);
  write_safetensors(dir / "model.safetensors", tensors);
}

// Runs `f`, expecting an error of type E whose message contains every part.
template <class E, class F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL() << "no error thrown";
  } catch (const E& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(HfGpt2Config, MapsGpt2KeysToModelConfig) {
  json j = tiny_config();
  j["n_inner"] = 24;
  j["layer_norm_epsilon"] = 1e-6;
  j["resid_pdrop"] = 0.0;
  const ModelConfig c = hf_gpt2_model_config(j, "config.json");
  EXPECT_EQ(c.d_model, 8);
  EXPECT_EQ(c.n_head, 2);
  EXPECT_EQ(c.n_layer, 2);
  EXPECT_EQ(c.context, 6);
  EXPECT_EQ(c.vocab_size, 11);
  EXPECT_EQ(c.d_mlp, 24);
  EXPECT_DOUBLE_EQ(c.norm_eps, 1e-6);
  EXPECT_EQ(c.mlp, MlpKind::GeluTanh);
  EXPECT_EQ(c.norm, NormKind::LayerNorm);
  EXPECT_EQ(c.norm_position, NormPosition::Pre);
  EXPECT_EQ(c.position, PositionKind::Learned);
  EXPECT_TRUE(c.bias);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_DOUBLE_EQ(c.resid_dropout, 0.0);
  EXPECT_DOUBLE_EQ(c.attn_dropout, 0.1);  // GPT2Config default where absent
}

TEST(HfGpt2Config, AbsentKeysTakeGpt2ConfigDefaults) {
  const ModelConfig c = hf_gpt2_model_config(json{{"model_type", "gpt2"}}, "config.json");
  EXPECT_EQ(c.d_model, 768);
  EXPECT_EQ(c.n_layer, 12);
  EXPECT_EQ(c.n_head, 12);
  EXPECT_EQ(c.context, 1024);
  EXPECT_EQ(c.vocab_size, kGpt2VocabSize);
  EXPECT_EQ(c.d_mlp, 3072);
  EXPECT_EQ(c.mlp, MlpKind::GeluTanh);
}

TEST(HfGpt2Config, ActivationsMapOnlyToTheirExactEquivalents) {
  for (const auto& [name, kind] : std::vector<std::pair<std::string, MlpKind>>{
           {"gelu_new", MlpKind::GeluTanh}, {"gelu_pytorch_tanh", MlpKind::GeluTanh},
           {"gelu_fast", MlpKind::GeluTanh}, {"gelu", MlpKind::Gelu}, {"relu", MlpKind::Relu}}) {
    json j = tiny_config();
    j["activation_function"] = name;
    EXPECT_EQ(hf_gpt2_model_config(j, "c").mlp, kind) << name;
  }
  for (const char* bad : {"silu", "quick_gelu", "tanh"}) {
    json j = tiny_config();
    j["activation_function"] = bad;
    expect_error<ConfigError>([&] { hf_gpt2_model_config(j, "DIR/config.json"); },
                              {"DIR/config.json", "activation_function", bad});
  }
}

TEST(HfGpt2Config, UnsupportedAttentionVariantsAreRejectedByKey) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, bool>>{
           {"scale_attn_by_inverse_layer_idx", true}, {"reorder_and_upcast_attn", true},
           {"scale_attn_weights", false}, {"add_cross_attention", true}}) {
    json j = tiny_config();
    j[key] = value;
    expect_error<ConfigError>([&] { hf_gpt2_model_config(j, "config.json"); }, {"config.json: " + key});
  }
}

TEST(HfGpt2Config, OtherArchitecturesAreRejectedByName) {
  json neox = {{"architectures", {"GPTNeoXForCausalLM"}}, {"model_type", "gpt_neox"}, {"hidden_size", 512}};
  expect_error<ConfigError>([&] { hf_gpt2_model_config(neox, "pythia/config.json"); },
                            {"pythia/config.json", "GPTNeoXForCausalLM", "gpt_neox", "GPT-2"});
  json llama = {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}};
  expect_error<ConfigError>([&] { hf_gpt2_model_config(llama, "c"); }, {"LlamaForCausalLM", "llama"});
  expect_error<ConfigError>([&] { hf_gpt2_model_config(json{{"model_type", "gpt_neo"}}, "c"); }, {"gpt_neo"});
  expect_error<ConfigError>([&] { hf_gpt2_model_config(json{{"n_embd", 8}}, "c"); }, {"model_type"});
}

TEST(HfGpt2Config, WrongTypesAndImpossibleValuesNameTheKey) {
  json j = tiny_config();
  j["n_embd"] = "eight";
  expect_error<ConfigError>([&] { hf_gpt2_model_config(j, "c"); }, {"n_embd", "integer"});
  j = tiny_config();
  j["n_head"] = 3;
  expect_error<ConfigError>([&] { hf_gpt2_model_config(j, "c"); }, {"n_embd", "n_head"});
  j = tiny_config();
  j["n_layer"] = 0;
  expect_error<ConfigError>([&] { hf_gpt2_model_config(j, "c"); }, {"n_layer"});
}

TEST(HfGpt2Config, ExportedConfigReadsBackToTheSameModelConfig) {
  json j = tiny_config();
  j["n_inner"] = 20;
  j["tie_word_embeddings"] = false;
  j["activation_function"] = "gelu";
  const ModelConfig c = hf_gpt2_model_config(j, "c");
  EXPECT_EQ(to_json(hf_gpt2_model_config(hf_gpt2_config_json(c), "exported")), to_json(c));
  EXPECT_EQ(hf_gpt2_config_json(c)["n_inner"], 20);
  EXPECT_TRUE(hf_gpt2_config_json(hf_gpt2_model_config(tiny_config(), "c"))["n_inner"].is_null());
}

TEST(HfGpt2Config, ModelsWithoutAGpt2EquivalentCannotBeExported) {
  ModelConfig c;
  c.norm = NormKind::RmsNorm;
  expect_error<ConfigError>([&] { hf_gpt2_config_json(c); }, {"model.norm", "rmsnorm"});
  c = ModelConfig{};
  c.position = PositionKind::Rope;
  expect_error<ConfigError>([&] { hf_gpt2_config_json(c); }, {"model.position", "rope"});
}

TEST(HfGpt2Mapping, BothKeyLayoutsGiveTheSameTransposedTensors) {
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  const auto plain = hf_tensors(cfg, "", true);
  auto prefixed = hf_tensors(cfg, "transformer.", true);
  prefixed["lm_head.weight"] = prefixed.at("transformer.wte.weight");  // tied copy, as .bin exports carry
  const HfGpt2Tensors a = hf_gpt2_to_metalm(plain, cfg, "plain");
  const HfGpt2Tensors b = hf_gpt2_to_metalm(prefixed, cfg, "prefixed");
  EXPECT_EQ(a.key_prefix, "");
  EXPECT_EQ(b.key_prefix, "transformer.");
  EXPECT_EQ(a.ignored.size(), 4u);  // 2 layers x (bias, masked_bias)
  EXPECT_EQ(b.ignored.size(), 5u);  // + the tied lm_head copy
  ASSERT_EQ(a.tensors.size(), gpt2_tensor_names(cfg).size());
  EXPECT_EQ(a.dtypes, std::set<std::string>{"F32"});
  for (const auto& [name, t] : a.tensors) EXPECT_TRUE(torch::equal(t, b.tensors.at(name))) << name;
  // Conv1D [in, out] -> Linear [out, in]; everything else unchanged.
  EXPECT_TRUE(torch::equal(a.tensors.at("blocks.1.attn.c_attn.weight"), plain.at("h.1.attn.c_attn.weight").t()));
  EXPECT_TRUE(torch::equal(a.tensors.at("blocks.0.mlp.c_fc.weight"), plain.at("h.0.mlp.c_fc.weight").t()));
  EXPECT_TRUE(torch::equal(a.tensors.at("blocks.0.mlp.c_proj.weight"), plain.at("h.0.mlp.c_proj.weight").t()));
  EXPECT_TRUE(torch::equal(a.tensors.at("blocks.0.attn.c_proj.weight"), plain.at("h.0.attn.c_proj.weight").t()));
  EXPECT_TRUE(torch::equal(a.tensors.at("blocks.1.attn.c_attn.bias"), plain.at("h.1.attn.c_attn.bias")));
  EXPECT_TRUE(torch::equal(a.tensors.at("wpe.weight"), plain.at("wpe.weight")));
  EXPECT_EQ(a.tensors.at("blocks.0.mlp.c_fc.weight").sizes(), (at::IntArrayRef{32, 8}));
  EXPECT_TRUE(a.tensors.at("blocks.0.mlp.c_fc.weight").is_contiguous());
}

TEST(HfGpt2Mapping, HalfPrecisionWeightsAreWidenedToFloat32) {
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  auto hf = hf_tensors(cfg, "", false);
  for (auto& [name, t] : hf) t = t.to(name.find("mlp") != std::string::npos ? at::kBFloat16 : at::kHalf);
  const HfGpt2Tensors m = hf_gpt2_to_metalm(hf, cfg, "f");
  EXPECT_EQ(m.dtypes, (std::set<std::string>{"BF16", "F16"}));
  for (const auto& [name, t] : m.tensors) EXPECT_EQ(t.scalar_type(), at::kFloat) << name;
  EXPECT_TRUE(torch::equal(m.tensors.at("blocks.0.mlp.c_fc.weight"), hf.at("h.0.mlp.c_fc.weight").to(at::kFloat).t()));
}

TEST(HfGpt2Mapping, UntiedHeadIsKeptAndExportRestoresTheHfNames) {
  json j = tiny_config();
  j["tie_word_embeddings"] = false;
  const ModelConfig cfg = hf_gpt2_model_config(j, "c");
  const auto hf = hf_tensors(cfg, "transformer.", false);
  const HfGpt2Tensors m = hf_gpt2_to_metalm(hf, cfg, "f");
  EXPECT_TRUE(torch::equal(m.tensors.at("lm_head.weight"), hf.at("lm_head.weight")));
  const auto back = metalm_to_hf_gpt2(m.tensors, cfg);
  ASSERT_EQ(back.size(), hf.size());
  for (const auto& [name, t] : hf) EXPECT_TRUE(torch::equal(back.at(name), t)) << name;
}

TEST(HfGpt2Mapping, MissingTensorIsNamedAsInTheFile) {
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  auto hf = hf_tensors(cfg, "transformer.", true);
  hf.erase("transformer.h.1.mlp.c_fc.weight");
  expect_error<FormatError>([&] { hf_gpt2_to_metalm(hf, cfg, "DIR/model.safetensors"); },
                            {"DIR/model.safetensors", "missing tensor 'transformer.h.1.mlp.c_fc.weight'", "[8, 32]"});
  json j = tiny_config();
  j["tie_word_embeddings"] = false;
  const ModelConfig untied = hf_gpt2_model_config(j, "c");
  auto no_head = hf_tensors(untied, "", false);
  no_head.erase("lm_head.weight");
  expect_error<FormatError>([&] { hf_gpt2_to_metalm(no_head, untied, "f"); }, {"missing tensor 'lm_head.weight'"});
}

TEST(HfGpt2Mapping, WrongShapeNamesTheTensorAndTheExpectedShape) {
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  auto hf = hf_tensors(cfg, "", false);
  hf["h.0.attn.c_attn.weight"] = hf.at("h.0.attn.c_attn.weight").t().contiguous();  // Linear layout by mistake
  expect_error<FormatError>([&] { hf_gpt2_to_metalm(hf, cfg, "f"); },
                            {"tensor 'h.0.attn.c_attn.weight'", "[24, 8]", "expected [8, 24]", "Conv1D"});
}

TEST(HfGpt2Mapping, ConfigThatDisagreesWithTheTensorsIsReported) {
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  const auto hf = hf_tensors(cfg, "", false);
  json j = tiny_config();
  j["n_embd"] = 16;
  expect_error<FormatError>([&] { hf_gpt2_to_metalm(hf, hf_gpt2_model_config(j, "c"), "f"); },
                            {"n_embd=16", "belong together"});
  j = tiny_config();
  j["n_layer"] = 1;
  expect_error<FormatError>([&] { hf_gpt2_to_metalm(hf, hf_gpt2_model_config(j, "c"), "f"); },
                            {"unexpected tensor 'h.1.", "n_layer = 1"});
}

TEST(HfGpt2Mapping, NonFloatingDtypeUnknownTensorAndMixedLayoutsAreErrors) {
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  auto hf = hf_tensors(cfg, "", false);
  hf["ln_f.bias"] = hf.at("ln_f.bias").to(at::kInt);
  expect_error<FormatError>([&] { hf_gpt2_to_metalm(hf, cfg, "f"); }, {"'ln_f.bias'", "dtype I32"});
  hf = hf_tensors(cfg, "", false);
  hf["score.weight"] = torch::zeros({2, 8});
  expect_error<FormatError>([&] { hf_gpt2_to_metalm(hf, cfg, "f"); }, {"unexpected tensor 'score.weight'"});
  hf = hf_tensors(cfg, "transformer.", false);
  hf["wpe.weight"] = hf.at("transformer.wpe.weight");
  hf.erase("transformer.wpe.weight");
  expect_error<FormatError>([&] { hf_gpt2_to_metalm(hf, cfg, "f"); }, {"'wpe.weight'", "prefix"});
}

TEST(HfGpt2Files, ReadsADirectoryAndRecordsTheGpt2TokenizerForItsVocabulary) {
  TempDir dir;
  json j = tiny_config();
  j["vocab_size"] = kGpt2VocabSize;
  j["n_layer"] = 1;
  const ModelConfig cfg = hf_gpt2_model_config(j, "c");
  write_dir(dir, j, hf_tensors(cfg, "", true));
  const HfGpt2Checkpoint ck = read_hf_gpt2(dir.path());
  EXPECT_EQ(ck.tokenizer, "gpt2");
  EXPECT_EQ(ck.architecture, "GPT2LMHeadModel");
  EXPECT_EQ(ck.model.vocab_size, kGpt2VocabSize);
  EXPECT_EQ(ck.files, std::vector<std::string>{dir / "model.safetensors"});

  TempDir small;
  const ModelConfig tiny = hf_gpt2_model_config(tiny_config(), "c");
  write_dir(small, tiny_config(), hf_tensors(tiny, "", false));
  EXPECT_EQ(read_hf_gpt2(small.path()).tokenizer, "");
}

TEST(HfGpt2Files, ReadsShardsListedInTheIndex) {
  TempDir dir;
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  const auto all = hf_tensors(cfg, "transformer.", false);
  std::map<std::string, torch::Tensor> first, second;
  json map = json::object();
  for (const auto& [name, t] : all) {
    const bool one = name.find("h.1.") == std::string::npos;
    (one ? first : second)[name] = t;
    map[name] = one ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  std::ofstream(dir / "config.json") << tiny_config().dump();
  std::ofstream(dir / "model.safetensors.index.json") << json{{"metadata", json::object()}, {"weight_map", map}}.dump();
  write_safetensors(dir / "model-00001-of-00002.safetensors", first);
  write_safetensors(dir / "model-00002-of-00002.safetensors", second);
  const HfGpt2Checkpoint ck = read_hf_gpt2(dir.path());
  EXPECT_EQ(ck.files.size(), 2u);
  EXPECT_TRUE(torch::equal(ck.weights.tensors.at("blocks.1.mlp.c_fc.weight"),
                           all.at("transformer.h.1.mlp.c_fc.weight").t()));
}

TEST(HfGpt2Files, MissingDirectoryOrFilesSayWhatToDo) {
  TempDir dir;
  expect_error<IoError>([&] { read_hf_gpt2(dir / "gpt2"); }, {"no such directory", "huggingface-cli download gpt2"});
  expect_error<IoError>([&] { read_hf_gpt2(dir.path()); }, {"config.json: not found"});
  std::ofstream(dir / "config.json") << tiny_config().dump();
  expect_error<IoError>([&] { read_hf_gpt2(dir.path()); }, {"model.safetensors: not found", "huggingface-cli"});
  std::ofstream(dir / "pytorch_model.bin") << "not read";
  expect_error<IoError>([&] { read_hf_gpt2(dir.path()); }, {"pytorch_model.bin", "safetensors only"});
}

TEST(HfGpt2Files, TruncatedFileAndUnknownDtypeAreFormatErrors) {
  TempDir dir;
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  write_dir(dir, tiny_config(), hf_tensors(cfg, "", false));
  const std::string path = dir / "model.safetensors";
  fs::resize_file(path, fs::file_size(path) - 100);
  expect_error<FormatError>([&] { read_hf_gpt2(dir.path()); }, {path, "truncated"});

  // A float8 tensor: a dtype newer than metalm's reader.
  std::string header = R"({"wte.weight":{"dtype":"F8_E4M3","shape":[11,8],"data_offsets":[0,88]}})";
  header.append((8 - header.size() % 8) % 8, ' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << header << std::string(88, '\0');
  out.close();
  expect_error<FormatError>([&] { read_hf_gpt2(dir.path()); }, {"'wte.weight'", "unknown dtype 'F8_E4M3'"});
}

TEST(HfGpt2Files, CommittedGoldenDirectoriesHoldTheSameWeightsInEveryLayout) {
  const HfGpt2Checkpoint f32 = read_hf_gpt2(kGoldenDir + "/plain_f32");
  const HfGpt2Checkpoint f16 = read_hf_gpt2(kGoldenDir + "/prefixed_f16");
  const HfGpt2Checkpoint bf16 = read_hf_gpt2(kGoldenDir + "/prefixed_bf16");
  EXPECT_EQ(f32.weights.key_prefix, "");
  EXPECT_EQ(f16.weights.key_prefix, "transformer.");
  EXPECT_EQ(f32.weights.dtypes, std::set<std::string>{"F32"});
  EXPECT_EQ(f16.weights.dtypes, std::set<std::string>{"F16"});
  EXPECT_EQ(bf16.weights.dtypes, std::set<std::string>{"BF16"});
  EXPECT_EQ(f32.weights.ignored.size(), 4u);
  EXPECT_EQ(f16.weights.ignored.size(), 3u);  // bool masks + lm_head copy
  EXPECT_TRUE(bf16.weights.ignored.empty());
  EXPECT_EQ(f32.model.d_mlp, 40);  // n_inner
  for (const auto& [name, t] : f32.weights.tensors) {
    EXPECT_TRUE(torch::equal(t, f16.weights.tensors.at(name))) << name;
    EXPECT_TRUE(torch::equal(t, bf16.weights.tensors.at(name))) << name;
  }
}

}  // namespace
}  // namespace metalm
