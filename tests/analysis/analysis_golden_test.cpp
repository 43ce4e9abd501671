// The whole analysis JSON against an independent implementation
// (tests/golden/make_analysis_golden.py): the same weights (trained ones among
// them), batches, training counts and settings; every field the schema lists
// must be there with the expected value, and no other field.
//
// Tolerances (docs/analysis-schema.md, "How the output is tested"): the model
// runs in float64 here, so every float must agree within 1e-9 + 1e-7 |expected|;
// integers, strings, booleans and nulls exactly. The committed golden files
// make the test run anywhere; when the tests' python3 (METALM_PYTHON) imports
// torch and numpy, two further tests check the committed ones are current (a
// stale file fails, naming the command that refreshes it): the expectations
// recomputed from the committed weights agree at the same tolerance, and
// re-training gives the committed weights within 1e-6 (training rounds
// differently on different CPUs, so never bitwise; the schema's golden section
// says why 1e-6 is safe and still catches any change of the recipe).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "metalm/analysis/analyze_model.hpp"
#include "metalm/config/json.hpp"
#include "metalm/io/safetensors.hpp"
#include "metalm/model/weights.hpp"

namespace metalm {
namespace {

using json = nlohmann::json;

const std::string kDir = std::string(METALM_SOURCE_DIR) + "/tests/golden";
const std::string kScript = kDir + "/make_analysis_golden.py";
const std::string kPython = METALM_PYTHON;  // "" when CMake found none

std::string refresh_hint() { return "regenerate with: " + (kPython.empty() ? "python3" : kPython) + " " + kScript; }

json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  return json::parse(in);
}

struct Tolerance {
  double abs = 1e-9, rel = 1e-7;
};

// Walks expected and actual together; every difference is one line naming
// its JSON path.
void compare(const json& actual, const json& expected, const std::string& path, const Tolerance& tol,
             std::vector<std::string>& errors) {
  auto fail = [&](const std::string& what) { errors.push_back(path + ": " + what); };
  if (expected.is_object()) {
    if (!actual.is_object()) return fail("expected an object, got " + actual.dump().substr(0, 80));
    for (const auto& [key, value] : expected.items()) {
      if (!actual.contains(key))
        fail("missing key '" + key + "'");
      else
        compare(actual[key], value, path + "." + key, tol, errors);
    }
    for (const auto& [key, value] : actual.items())
      if (!expected.contains(key)) fail("unexpected key '" + key + "'");
    return;
  }
  if (expected.is_array()) {
    if (!actual.is_array() || actual.size() != expected.size())
      return fail("expected an array of " + std::to_string(expected.size()) + ", got " + actual.dump().substr(0, 80));
    for (size_t i = 0; i < expected.size(); ++i)
      compare(actual[i], expected[i], path + "[" + std::to_string(i) + "]", tol, errors);
    return;
  }
  if (expected.is_number_float()) {
    if (!actual.is_number()) return fail("expected " + expected.dump() + ", got " + actual.dump());
    const double a = actual.get<double>(), e = expected.get<double>();
    if (!(std::abs(a - e) <= tol.abs + tol.rel * std::abs(e)))
      fail("expected " + expected.dump() + ", got " + actual.dump() + " (difference " + std::to_string(a - e) + ")");
    return;
  }
  if (expected.is_number_integer()) {
    // An integral count or index: exactly, and as an integer.
    if (!actual.is_number_integer() || actual != expected) fail("expected " + expected.dump() + ", got " + actual.dump());
    return;
  }
  if (actual != expected) fail("expected " + expected.dump() + ", got " + actual.dump());
}

struct Golden {
  SafeTensorsFile tensors;
  json cases;
};

Golden load_golden(const std::string& dir) {
  Golden g;
  g.tensors = read_safetensors(dir + "/analysis_golden.safetensors");
  g.cases = read_json(dir + "/analysis_golden.json").at("cases");
  return g;
}

// The model of a golden case, in float64, with its weights.
CausalTransformer golden_model(const Golden& g, const std::string& name) {
  const ModelConfig cfg = model_config_from_json(json::parse(g.tensors.metadata.at(name + ".config")), name);
  CausalTransformer model(cfg);
  model->to(torch::kDouble);
  std::map<std::string, torch::Tensor> weights;
  const std::string prefix = name + ".weights.";
  for (const auto& [key, t] : g.tensors.tensors)
    if (key.rfind(prefix, 0) == 0) weights[key.substr(prefix.size())] = t;
  load_weights(*model, weights, name);
  return model;
}

std::vector<Batch> golden_batches(const Golden& g, const std::string& name) {
  std::vector<Batch> out;
  for (int b = 0;; ++b) {
    const std::string key = name + ".batch" + std::to_string(b);
    if (!g.tensors.tensors.count(key + ".inputs")) break;
    out.push_back({g.tensors.tensors.at(key + ".inputs"), g.tensors.tensors.at(key + ".targets")});
  }
  return out;
}

DatasetMeta golden_meta(const Golden& g, const std::string& name) {
  DatasetMeta meta;
  const at::Tensor counts = g.tensors.tensors.at(name + ".train_counts").contiguous();
  meta.vocab_size = counts.numel();
  meta.train_counts.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
  return meta;
}

AnalysisConfig golden_settings(const json& a) {
  AnalysisConfig cfg;
  cfg.granularity = a.at("granularity") == "block" ? Granularity::Block : Granularity::Sublayer;
  cfg.chunk = a.at("chunk").get<int64_t>();
  cfg.freq_bins = a.at("freq_bins").get<int64_t>();
  // 2^64 - 1 and the like: the seed is taken modulo 2^64.
  cfg.seed = static_cast<int64_t>(a.at("seed").get<uint64_t>());
  cfg.bootstrap = a.at("bootstrap").get<int64_t>();
  cfg.permutations = a.at("permutations").get<int64_t>();
  return cfg;
}

// Every case of a golden directory: returns the number of cases checked.
size_t check_all(const std::string& dir) {
  const Golden g = load_golden(dir);
  size_t checked = 0;
  for (const auto& [name, c] : g.cases.items()) {
    SCOPED_TRACE(name + " (" + dir + ")");
    const std::string model_name = c.at("model");
    CausalTransformer model = golden_model(g, model_name);
    const DatasetMeta meta = golden_meta(g, model_name);
    const json actual = analyze_model(model, golden_batches(g, model_name), golden_settings(c.at("analysis")),
                                      c.at("meta").get<bool>() ? &meta : nullptr);
    std::vector<std::string> errors;
    compare(actual, c.at("expected"), "analysis", Tolerance{}, errors);
    std::string report;
    for (size_t i = 0; i < errors.size() && i < 25; ++i) report += "\n  " + errors[i];
    EXPECT_TRUE(errors.empty()) << errors.size() << " fields differ from the golden reference:" << report
                                << "\n(if the definitions changed on purpose, " << refresh_hint() << ")";
    ++checked;
  }
  return checked;
}

TEST(AnalysisGolden, EveryFieldMatchesTheIndependentImplementation) {
  // 6 models (4 trained, 1 structured random, 1 at initialisation) x 2
  // granularities, plus one without meta.json and one with seed 2^64 - 1.
  EXPECT_EQ(check_all(kDir), 14u);
}

TEST(AnalysisGolden, UntrainedControlIsTheAnalysisOfTheFreshModelOfTheSameConfig) {
  // The untrained control analyses exactly the weights a run of the config
  // starts from (torch::manual_seed(init_seed), then the constructor); that
  // its analysis is right is held by the golden "init" and other cases above.
  const Golden g = load_golden(kDir);
  const std::string name = "preln_layernorm_trained";
  CausalTransformer trained = golden_model(g, name);
  const ModelConfig cfg = trained->config();
  const std::vector<Batch> batches = golden_batches(g, name);
  const DatasetMeta meta = golden_meta(g, name);
  AnalysisConfig settings;
  settings.chunk = 5;
  settings.freq_bins = 4;
  const json control = analyze_untrained(cfg, 7, batches, settings, &meta);
  torch::manual_seed(7);
  CausalTransformer fresh(cfg);
  const json expected = analyze_model(fresh, batches, settings, &meta);
  std::vector<std::string> errors;
  compare(control, expected, "control_untrained", Tolerance{0.0, 0.0}, errors);
  EXPECT_TRUE(errors.empty()) << errors.front();
  // ... and not the trained model's (a control equal to the true value).
  trained->to(torch::kFloat);
  const json real = analyze_model(trained, batches, settings, &meta);
  EXPECT_GT(std::abs(real["final_loss"].get<double>() - control["final_loss"].get<double>()), 1.0);
  EXPECT_GT(std::abs(real["steps"][0]["alignment"]["mean"].get<double>() -
                     control["steps"][0]["alignment"]["mean"].get<double>()),
            0.1);
}

// Runs the golden maker with ARGS into a fresh directory of the build tree
// and returns it; "" when the tests' python3 lacks torch or numpy.
std::string run_maker(const std::string& args) {
  if (kPython.empty() || std::getenv("METALM_GOLDEN_NO_PYTHON") != nullptr ||
      std::system(("'" + kPython + "' -c 'import torch, numpy' >/dev/null 2>&1").c_str()) != 0)
    return "";
  static int runs = 0;
  const std::string dir = std::string(METALM_BINARY_DIR) + "/analysis_golden_" + std::to_string(::getpid()) + "_" +
                          std::to_string(runs++);
  const std::string cmd = "mkdir -p '" + dir + "' && '" + kPython + "' '" + kScript + "' " + args + " '" + dir + "' >/dev/null";
  if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
  return dir;
}

TEST(AnalysisGolden, ExpectationsRecomputedFromTheCommittedWeightsAgreeWithTheCommittedOnes) {
  const std::string dir = run_maker("--weights '" + kDir + "/analysis_golden.safetensors'");
  if (dir.empty()) GTEST_SKIP() << "no python3 with torch and numpy (METALM_PYTHON); the committed golden files were checked";
  EXPECT_EQ(check_all(dir), 14u);
  std::vector<std::string> errors;
  compare(read_json(kDir + "/analysis_golden.json"), read_json(dir + "/analysis_golden.json"), "golden",
          Tolerance{}, errors);
  EXPECT_TRUE(errors.empty()) << "the committed tests/golden/analysis_golden.json is stale (" << errors.size()
                              << " fields, first " << errors.front() << "); " << refresh_hint();
  std::system(("rm -rf '" + dir + "'").c_str());
}

TEST(AnalysisGolden, RetrainingReproducesTheCommittedWeightsWithinTheDocumentedTolerance) {
  const std::string dir = run_maker("--weights-only");
  if (dir.empty()) GTEST_SKIP() << "no python3 with torch and numpy (METALM_PYTHON); the committed golden files were checked";
  const SafeTensorsFile a = read_safetensors(kDir + "/analysis_golden.safetensors");
  const SafeTensorsFile b = read_safetensors(dir + "/analysis_golden.safetensors");
  EXPECT_EQ(a.metadata, b.metadata) << refresh_hint();
  ASSERT_EQ(a.tensors.size(), b.tensors.size()) << refresh_hint();
  for (const auto& [key, t] : a.tensors) {
    ASSERT_TRUE(b.tensors.count(key)) << key << " is not made any more; " << refresh_hint();
    const at::Tensor& fresh = b.tensors.at(key);
    ASSERT_EQ(t.sizes(), fresh.sizes()) << key << "; " << refresh_hint();
    if (t.is_floating_point())
      // Re-training on another CPU moves the stored float32 weights by
      // ~1e-11; one Adam step less moves them by more than 1e-2.
      EXPECT_LE((t.to(at::kDouble) - fresh.to(at::kDouble)).abs().max().item<double>(), 1e-6)
          << key << " differs; " << refresh_hint();
    else
      EXPECT_TRUE(torch::equal(t, fresh)) << key << " (batches and counts do not depend on the CPU) differs; "
                                          << refresh_hint();
  }
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace metalm
