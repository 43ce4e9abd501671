// Importing Hugging Face GPT-2 checkpoints end to end, against an independent
// forward pass (tests/golden/make_hf_gpt2_golden.py, plain torch after HF's
// modeling_gpt2.py): the same tiny checkpoint in three files (no prefix F32
// with mask buffers; "transformer." F16 with a tied lm_head copy; BF16) is
// imported to a metalm checkpoint, loaded back, and its logits and per-layer
// states must match the golden ones within 1e-5 (model run in double).
// Export is checked by round trip to the original Hugging Face tensors.
//
// When the tests' python3 (METALM_PYTHON, found by CMake) has torch (and
// METALM_GOLDEN_NO_PYTHON is unset), the
// golden files are also regenerated into the build directory and compared to
// the committed ones, so a stale committed file fails with the command to
// refresh it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/io/hf_gpt2.hpp"
#include "metalm/io/safetensors.hpp"
#include "metalm/train/checkpoint.hpp"
#include "support/temp_dir.hpp"
#include "metalm/train/hf_import.hpp"

namespace metalm {
namespace {

namespace fs = std::filesystem;

const std::string kGolden = std::string(METALM_SOURCE_DIR) + "/tests/golden";
const char* const kVariants[] = {"plain_f32", "prefixed_f16", "prefixed_bf16"};

using test::TempDir;

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// Imports `hf_dir`, loads the checkpoint back and compares its forward pass
// with the golden outputs.
void check_import_matches_golden(const std::string& hf_dir, const std::string& golden_path, const TempDir& tmp) {
  SCOPED_TRACE(hf_dir);
  const SafeTensorsFile golden = read_safetensors(golden_path);
  const std::string ckpt = tmp / (fs::path(hf_dir).filename().string() + "_ckpt");
  const ImportHfResult r = import_hf_gpt2(hf_dir, ckpt);
  EXPECT_EQ(r.tokenizer, "");  // vocab 61: not GPT-2's tokenizer

  LoadedCheckpoint ck = load_checkpoint(ckpt);
  EXPECT_FALSE(ck.has_optimizer);
  EXPECT_EQ(ck.state.extra.at("source"), "import-hf");
  EXPECT_EQ(ck.config.model.mlp, MlpKind::GeluTanh);
  EXPECT_EQ(ck.config.model.d_mlp, 40);
  for (auto [dtype, tol] : {std::pair<torch::Dtype, double>{torch::kDouble, 1e-5}, {torch::kFloat, 1e-4}}) {
    ck.model->to(dtype);
    ck.model->eval();  // the imported dropouts (0.1) must not act here
    torch::NoGradGuard no_grad;
    Trace trace;
    const torch::Tensor logits = ck.model->forward(golden.tensors.at("tokens"), CaptureRequest::residual_stream(), trace);
    auto expect_close = [&](const std::string& name, const torch::Tensor& ours) {
      const torch::Tensor& ref = golden.tensors.at(name);
      ASSERT_EQ(ours.sizes(), ref.sizes()) << name;
      const double err = max_abs_diff(ours, ref);
      EXPECT_LE(err, tol) << name << " (" << c10::toString(dtype) << "): max abs error " << err;
    };
    expect_close("logits", logits);
    expect_close("final", trace.at(Site::Final));
    for (int64_t l = 0; l < ck.config.model.n_layer; ++l) {
      expect_close(site_name(Site::ResidPre, l), trace.at(Site::ResidPre, l));
      expect_close(site_name(Site::ResidMid, l), trace.at(Site::ResidMid, l));
      expect_close(site_name(Site::ResidPost, l), trace.at(Site::ResidPost, l));
      // HF's output_hidden_states[l] is the input of block l.
      expect_close("hidden_states." + std::to_string(l), trace.at(Site::ResidPre, l));
    }
    // ... and its last entry is ln_f(final).
    expect_close("hidden_states." + std::to_string(ck.config.model.n_layer),
                 ck.model->final_norm(trace.at(Site::Final)));
  }
}

TEST(ImportHf, EveryKeyLayoutAndDtypeMatchesTheIndependentForwardPass) {
  TempDir tmp;
  for (const char* v : kVariants)
    check_import_matches_golden(kGolden + "/hf_gpt2/" + v, kGolden + "/hf_gpt2_golden.safetensors", tmp);
}

TEST(ImportHf, CommittedGoldenFilesMatchTheGenerator) {
  const std::string python = METALM_PYTHON;  // "" when CMake found none
  if (std::getenv("METALM_GOLDEN_NO_PYTHON") != nullptr || python.empty() ||
      std::system(("'" + python + "' -c 'import torch, numpy' >/dev/null 2>&1").c_str()) != 0)
    GTEST_SKIP() << "no python3 with torch (METALM_PYTHON): the committed golden files are used as they are";
  TempDir tmp;
  const std::string cmd = "'" + python + "' '" + kGolden + "/make_hf_gpt2_golden.py' '" + tmp.path() +
                          "' >/dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const SafeTensorsFile fresh = read_safetensors(tmp / "hf_gpt2_golden.safetensors");
  const SafeTensorsFile committed = read_safetensors(kGolden + "/hf_gpt2_golden.safetensors");
  const std::string refresh = "stale golden file: run " + python + " tests/golden/make_hf_gpt2_golden.py";
  ASSERT_EQ(fresh.tensors.size(), committed.tensors.size()) << refresh;
  for (const auto& [name, t] : fresh.tensors) EXPECT_LE(max_abs_diff(t, committed.tensors.at(name)), 1e-9) << name << ": " << refresh;
  for (const char* v : kVariants) {
    const auto a = read_safetensors(tmp / (std::string("hf_gpt2/") + v + "/model.safetensors")).tensors;
    const auto b = read_safetensors(kGolden + "/hf_gpt2/" + v + "/model.safetensors").tensors;
    ASSERT_EQ(a.size(), b.size()) << v << ": " << refresh;
    for (const auto& [name, t] : a) EXPECT_TRUE(torch::equal(t, b.at(name))) << v << " " << name << ": " << refresh;
  }
  // The freshly generated outputs must hold for the importer too.
  check_import_matches_golden(tmp / "hf_gpt2/plain_f32", tmp / "hf_gpt2_golden.safetensors", tmp);
}

TEST(ImportHf, HfLayoutExportRoundTripsToTheOriginalTensorsAndConfig) {
  TempDir tmp;
  const std::string src = kGolden + "/hf_gpt2/prefixed_bf16";
  import_hf_gpt2(src, tmp / "ckpt");
  export_weights(tmp / "ckpt", tmp / "hf/model.safetensors", WeightsLayout::Hf, tmp / "hf/config.json");
  const SafeTensorsFile exported = read_safetensors(tmp / "hf/model.safetensors");
  const SafeTensorsFile original = read_safetensors(src + "/model.safetensors");
  EXPECT_EQ(exported.metadata.at("format"), "pt");
  ASSERT_EQ(exported.tensors.size(), original.tensors.size());  // tied head not stored, no buffers
  for (const auto& [name, t] : original.tensors) {
    ASSERT_TRUE(exported.tensors.count(name)) << name;
    EXPECT_EQ(exported.tensors.at(name).scalar_type(), at::kFloat) << name;
    EXPECT_TRUE(torch::equal(exported.tensors.at(name), t.to(at::kFloat))) << name;
  }
  // The exported directory imports again to the same model.
  const ModelConfig again = hf_gpt2_model_config(read_json_file(tmp / "hf/config.json"), "exported");
  EXPECT_EQ(to_json(again), to_json(load_checkpoint(tmp / "ckpt").config.model));
  check_import_matches_golden(tmp / "hf", kGolden + "/hf_gpt2_golden.safetensors", tmp);
}

TEST(ImportHf, MetalmLayoutExportHoldsTheParametersAndTheConfig) {
  TempDir tmp;
  import_hf_gpt2(kGolden + "/hf_gpt2/plain_f32", tmp / "ckpt");
  export_weights(tmp / "ckpt", tmp / "w.safetensors", WeightsLayout::Metalm);
  const SafeTensorsFile f = read_safetensors(tmp / "w.safetensors");
  LoadedCheckpoint ck = load_checkpoint(tmp / "ckpt");
  const auto params = ck.model->named_parameters();
  ASSERT_EQ(f.tensors.size(), params.size());
  for (const auto& p : params) EXPECT_TRUE(torch::equal(f.tensors.at(p.key()), p.value())) << p.key();
  EXPECT_EQ(nlohmann::json::parse(f.metadata.at("metalm.config")), to_json(ck.config.model));
  EXPECT_EQ(f.metadata.at("format"), "metalm");
}

TEST(ImportHf, ModelsWithoutAGpt2EquivalentAreNotExportedInHfLayout) {
  TempDir tmp;
  RunConfig rc;
  rc.model.vocab_size = 13;
  rc.model.context = 8;
  rc.model.d_model = 8;
  rc.model.n_layer = 1;
  rc.model.n_head = 2;
  rc.model.position = PositionKind::Rope;
  resolve(rc);
  CausalTransformer model(rc.model);
  save_checkpoint(tmp / "rope", rc, model, nullptr, CheckpointState{});
  EXPECT_THROW(export_weights(tmp / "rope", tmp / "x.safetensors", WeightsLayout::Hf), ConfigError);
  EXPECT_FALSE(fs::exists(tmp / "x.safetensors"));
  export_weights(tmp / "rope", tmp / "x.safetensors", WeightsLayout::Metalm);  // our names always work
  EXPECT_TRUE(fs::exists(tmp / "x.safetensors"));
}

TEST(ImportHf, AFailedImportLeavesNoCheckpoint) {
  TempDir tmp;
  fs::copy(kGolden + "/hf_gpt2/plain_f32", tmp / "hf");
  auto tensors = read_safetensors(tmp / "hf/model.safetensors").tensors;
  tensors.erase("h.1.ln_2.bias");
  write_safetensors(tmp / "hf/model.safetensors", tensors);
  try {
    import_hf_gpt2(tmp / "hf", tmp / "ckpt");
    FAIL() << "no error";
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("missing tensor 'h.1.ln_2.bias'"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(tmp / "ckpt"));
}

}  // namespace
}  // namespace metalm
