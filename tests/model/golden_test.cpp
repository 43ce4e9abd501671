// The model against an independent PyTorch implementation
// (tests/golden/make_model_golden.py): same weights, same tokens; logits and
// every site must agree within 1e-5 (the model run in double; float32 within
// 1e-4).
//
// The committed tests/golden/model_golden.safetensors makes this test run
// anywhere. When the tests' python3 (METALM_PYTHON, found by CMake) can import
// torch (and METALM_GOLDEN_NO_PYTHON is unset), the test first regenerates the file into the build directory,
// checks it against the committed one (a stale committed file fails, with the
// command to refresh it) and also tests the model against the fresh file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "metalm/config/json.hpp"
#include "metalm/io/safetensors.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/weights.hpp"

namespace metalm {
namespace {

const std::string kCommitted = std::string(METALM_SOURCE_DIR) + "/tests/golden/model_golden.safetensors";
const std::string kScript = std::string(METALM_SOURCE_DIR) + "/tests/golden/make_model_golden.py";
const std::string kPython = METALM_PYTHON;  // "" when CMake found none

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, sep);) out.push_back(item);
  return out;
}

// Path of a freshly generated golden file, or "" when python3-torch is absent.
const std::string& regenerated_golden() {
  static const std::string path = [] {
    if (std::getenv("METALM_GOLDEN_NO_PYTHON") != nullptr || kPython.empty()) return std::string();
    if (std::system(("'" + kPython + "' -c 'import torch, numpy' >/dev/null 2>&1").c_str()) != 0) return std::string();
    const std::string out = std::string(METALM_BINARY_DIR) + "/model_golden_" + std::to_string(::getpid()) +
                            ".safetensors";
    const std::string cmd = "'" + kPython + "' '" + kScript + "' '" + out + "' >/dev/null";
    if (std::system(cmd.c_str()) != 0) return std::string("FAILED");
    return out;
  }();
  return path;
}

void check_against(const std::string& golden_path, torch::Dtype dtype, double tol) {
  const SafeTensorsFile golden = read_safetensors(golden_path);
  const auto cases = split(golden.metadata.at("cases"), ',');
  ASSERT_GE(cases.size(), 5u);
  for (const auto& name : cases) {
    SCOPED_TRACE(name + " (" + golden_path + ")");
    ModelConfig cfg = model_config_from_json(nlohmann::json::parse(golden.metadata.at(name + ".config")), name);
    CausalTransformer model(cfg);
    model->to(dtype);
    model->eval();
    std::map<std::string, torch::Tensor> weights;
    const std::string prefix = name + ".weights.";
    for (const auto& [key, t] : golden.tensors)
      if (key.rfind(prefix, 0) == 0) weights[key.substr(prefix.size())] = t;
    load_weights(*model, weights, golden_path);

    Trace trace;
    const torch::Tensor logits = model->forward(golden.tensors.at(name + ".tokens"), CaptureRequest::all(), trace);
    auto expect_close = [&](const std::string& site, const torch::Tensor& ours) {
      const torch::Tensor ref = golden.tensors.at(name + "." + site).to(torch::kDouble);
      ASSERT_EQ(ours.sizes(), ref.sizes()) << site;
      const double err = (ours.to(torch::kDouble) - ref).abs().max().item<double>();
      EXPECT_LE(err, tol) << site << ": max abs error " << err;
    };
    expect_close("logits", logits);
    expect_close("final", trace.at(Site::Final));
    for (int64_t l = 0; l < cfg.n_layer; ++l)
      for (Site s : {Site::ResidPre, Site::AttnOut, Site::ResidMid, Site::MlpOut, Site::ResidPost, Site::AttnPattern})
        expect_close(site_name(s, l), trace.at(s, l));
  }
}

TEST(Golden, DoubleModelMatchesTheIndependentImplementation) { check_against(kCommitted, torch::kDouble, 1e-5); }

TEST(Golden, FloatModelMatchesTheIndependentImplementation) { check_against(kCommitted, torch::kFloat, 1e-4); }

TEST(Golden, RegeneratedReferenceAgreesWithTheCommittedOne) {
  const std::string& fresh = regenerated_golden();
  if (fresh.empty()) GTEST_SKIP() << "no python3 with torch (METALM_PYTHON); using the committed golden file";
  ASSERT_NE(fresh, "FAILED") << "running " << kScript << " failed";
  check_against(fresh, torch::kDouble, 1e-5);
  const SafeTensorsFile a = read_safetensors(kCommitted), b = read_safetensors(fresh);
  EXPECT_EQ(a.metadata, b.metadata) << "refresh with: " << kPython << " " << kScript;
  ASSERT_EQ(a.tensors.size(), b.tensors.size()) << "refresh with: " << kPython << " " << kScript;
  for (const auto& [key, t] : a.tensors)
    EXPECT_TRUE(b.tensors.count(key) && torch::allclose(t, b.tensors.at(key), 1e-6, 1e-6))
        << key << " differs; refresh with: " << kPython << " " << kScript;
  std::remove(fresh.c_str());
}

}  // namespace
}  // namespace metalm
