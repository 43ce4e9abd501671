// The tuned lens as an inner objective: identity translators are the logit
// lens exactly; the trajectory is analysed in the final state's coordinates;
// an edit of a reading maps back to a model state through the inverse
// translator; a lens file is read once (make_lens), and one that does not fit
// the model is refused in one line.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/autograd.h>
#include <torch/utils.h>
#include <unistd.h>

#include <filesystem>

#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/lens.hpp"
#include "metalm/analysis/tuned_lens.hpp"
#include "metalm/core/error.hpp"
#include "metalm/io/safetensors.hpp"

#include "../model/tiny_configs.hpp"
#include "lens_fixture.hpp"

namespace metalm {
namespace {

namespace fs = std::filesystem;
constexpr int64_t B = 3, T = 8, V = 13, D = 16;

ModelConfig tiny_model() {
  ModelConfig c = testing::small_config(V, T, D, 2);
  resolve(c);
  return c;
}

Batch random_batch(uint64_t seed) { return testing::random_token_batch(B, T, V, seed); }

struct TempFile {
  std::string path = (fs::temp_directory_path() / ("metalm-lens-" + std::to_string(::getpid()) + "-" +
                                                    std::to_string(counter()++) + ".safetensors"))
                         .string();
  ~TempFile() {
    std::error_code ec;
    fs::remove(path, ec);
  }
  static int& counter() {
    static int n = 0;
    return n;
  }
};

TunedLens perturbed_lens(uint64_t seed) { return testing::perturbed_tuned_lens(2, D, seed); }

TEST(TunedLens, SitesAreTheResidualStatesButFinal) {
  EXPECT_EQ(TunedLens::sites(2), (std::vector<std::string>{"blocks.0.resid_pre", "blocks.0.resid_mid",
                                                           "blocks.0.resid_post", "blocks.1.resid_mid"}));
  // Every state of either granularity's trajectory but `final` has a translator.
  const TunedLens lens = TunedLens::identity(3, 4);
  for (auto g : {Granularity::Block, Granularity::Sublayer}) {
    const auto names = trajectory_names(3, g);
    for (size_t k = 0; k + 1 < names.size(); ++k) EXPECT_TRUE(lens.translators.count(names[k])) << names[k];
    EXPECT_EQ(names.back(), "final");
  }
}

TEST(TunedLens, IdentityTranslatorsReproduceTheLogitLensAnalysisExactly) {
  torch::manual_seed(3);
  CausalTransformer model(tiny_model());
  const TempFile file;
  save_tuned_lens(file.path, TunedLens::identity(2, D), model->config());
  const std::vector<Batch> batches{random_batch(1), random_batch(2)};
  for (auto g : {Granularity::Block, Granularity::Sublayer}) {
    AnalysisConfig logit;
    logit.granularity = g;
    AnalysisConfig tuned = logit;
    tuned.lens = "tuned:" + file.path;
    nlohmann::json a = analyze_model(model, batches, logit, nullptr);
    nlohmann::json b = analyze_model(model, batches, tuned, nullptr, *make_lens(tuned, model->config()));
    EXPECT_EQ(a["lens"], "logit");
    EXPECT_EQ(b["lens"], tuned.lens);
    a.erase("lens");
    b.erase("lens");
    EXPECT_EQ(a.dump(), b.dump()) << to_string(g);  // every number bit for bit
  }
}

TEST(TunedLens, TheTrajectoryIsAnalysedInTheFinalStatesCoordinates) {
  torch::manual_seed(4);
  CausalTransformer model(tiny_model());
  model->eval();
  auto lens = std::make_shared<const TunedLens>(perturbed_lens(9));
  const Batch batch = random_batch(5);
  AnalysisConfig c;
  c.granularity = Granularity::Sublayer;
  const BatchAnalysis part = analyze_batch(model, batch, 0, c, *tuned_lens(*lens, "tuned:x"));
  const Trajectory& tr = part.trajectory;
  const ModelTrajectory mt = capture_trajectory(model, batch.inputs, c.granularity);
  const at::Tensor y = batch.targets.reshape({-1}).index_select(0, tr.rows);
  // u_k = A_k s_k + b_k through an explicit product in double, independent of TunedLens::translate.
  auto mapped = [&](size_t k) {
    at::Tensor h = mt.states[k].reshape({-1, D}).index_select(0, tr.rows).to(at::kDouble);
    if (mt.names[k] == "final") return h;
    const Translator& t = lens->translators.at(mt.names[k]);
    return at::matmul(h, t.weight.to(at::kDouble).t()) + t.bias.to(at::kDouble);
  };
  // ℓ(u) and ∇ℓ(u) of the one logit lens, by autograd in float32 on u.
  auto loss_grad = [&](const at::Tensor& u) {
    at::Tensor leaf = u.to(at::kFloat).detach().requires_grad_(true);
    const at::Tensor loss = -at::log_softmax(model->lens_logits(leaf), 1).gather(1, y.unsqueeze(1)).squeeze(1);
    const at::Tensor g = torch::autograd::grad({loss.sum()}, {leaf})[0];
    return std::make_pair(loss.detach().to(at::kDouble), g.to(at::kDouble));
  };
  for (size_t k = 0; k + 1 < mt.states.size(); ++k) {
    const at::Tensor u0 = mapped(k), u1 = mapped(k + 1);
    const auto [l0, g0] = loss_grad(u0);
    const auto [l1, g1] = loss_grad(u1);
    (void)g1;
    const StepRecord& st = tr.steps[k];
    EXPECT_TRUE(at::allclose(st.loss_before, l0, 1e-4, 1e-5)) << k;
    // One objective: the step's loss after is the next state's own loss.
    EXPECT_TRUE(at::allclose(st.loss_after, l1, 1e-4, 1e-5)) << k;
    EXPECT_TRUE(at::equal(st.loss_after, tr.states[k + 1].loss)) << k;
    const at::Tensor delta = u1 - u0;
    const at::Tensor cos = -(delta * g0).sum(1) / (delta.norm(2, {1}) * g0.norm(2, {1}));
    EXPECT_TRUE(at::allclose(st.alignment, cos, 1e-3, 1e-4)) << k;
  }
  // The last state is the model's own readout: its loss is the model's loss.
  EXPECT_NEAR(tr.states.back().loss.sum().item<double>(), part.nll_sum, 1e-3);
}

TEST(TunedLens, TheUntrainedControlIsReadThroughTheLogitLens) {
  const ModelConfig cfg = tiny_model();
  const TempFile file;
  save_tuned_lens(file.path, perturbed_lens(12), cfg);
  const std::vector<Batch> batches{random_batch(3)};
  AnalysisConfig logit;
  AnalysisConfig tuned = logit;
  tuned.lens = "tuned:" + file.path;
  const nlohmann::json a = analyze_untrained(cfg, 7, batches, logit, nullptr);
  const nlohmann::json b = analyze_untrained(cfg, 7, batches, tuned, nullptr);
  EXPECT_EQ(b["lens"], "logit");
  EXPECT_EQ(a.dump(), b.dump());
}

TEST(TunedLens, AnEditOfAReadingIsMappedBackThroughTheInverseTranslator) {
  const std::shared_ptr<const Lens> lens = tuned_lens(perturbed_lens(10), "tuned:x");
  const TunedLens translators = perturbed_lens(10);
  at::Generator gen = at::detail::createCPUGenerator(8);
  const at::TensorOptions f32(at::kFloat);
  const at::Tensor s = at::normal(0.0, 1.0, {B, T, D}, gen, f32);
  const std::string site = "blocks.0.resid_mid";
  const at::Tensor u = translators.translate(site, s);
  at::Tensor edited = u.clone();
  edited[1][2] += at::normal(0.0, 1.0, {D}, gen, f32);
  const at::Tensor back = lens->state_of(site, edited, s, u);
  // The lens reads the state it returns as the edited reading ...
  EXPECT_TRUE(at::allclose(translators.translate(site, back), edited, 1e-4, 1e-5));
  // ... and an unedited row keeps its state bit for bit.
  at::Tensor same = at::ones({B, T}, at::TensorOptions(at::kBool));
  same[1][2] = false;
  EXPECT_TRUE(at::equal(back.index({same}), s.index({same})));
  EXPECT_FALSE(at::allclose(back[1][2], s[1][2]));
  // `final` has no translator, and the logit lens none at all.
  EXPECT_TRUE(at::equal(lens->state_of("final", edited, s, u), edited));
  EXPECT_TRUE(at::equal(logit_lens()->state_of(site, edited, s, u), edited));
  // Stacked copies broadcast against one state.
  const at::Tensor two = at::stack({edited, u});
  EXPECT_TRUE(at::equal(lens->state_of(site, two, s, u)[0], back));
  EXPECT_TRUE(at::equal(lens->state_of(site, two, s, u)[1], s));
  // A singular translator has no inverse: refused when used, in words.
  TunedLens flat = perturbed_lens(10);
  flat.translators.at(site).weight.zero_();
  EXPECT_THROW(tuned_lens(flat, "tuned:flat")->state_of(site, edited, s, u), ShapeError);
}

TEST(TunedLens, MakeLensReadsTheFileOnceAndNamesTheLens) {
  const ModelConfig cfg = tiny_model();
  const TempFile file;
  save_tuned_lens(file.path, perturbed_lens(13), cfg);
  AnalysisConfig a;
  EXPECT_EQ(make_lens(a, cfg)->name(), "logit");
  a.lens = "tuned:" + file.path;
  const std::shared_ptr<const Lens> lens = make_lens(a, cfg);
  EXPECT_EQ(lens->name(), a.lens);
  std::filesystem::remove(file.path);  // read once: the lens no longer needs its file
  const at::Tensor s = at::ones({1, 2, D});
  const std::vector<at::Tensor> u = lens->translate({s, s}, {"blocks.0.resid_pre", "final"});
  const Translator t = perturbed_lens(13).translators.at("blocks.0.resid_pre");
  EXPECT_TRUE(at::allclose(u[0], at::matmul(s, t.weight.t()) + t.bias, 1e-5, 1e-6));
  EXPECT_TRUE(at::equal(u[1], s));
  a.lens = "tuned:" + file.path;
  EXPECT_THROW(make_lens(a, cfg), IoError);
  a.lens = "tuned:";
  EXPECT_THROW(make_lens(a, cfg), ConfigError);
}

TEST(TunedLens, FileRoundTripsAndBadFilesAreRefusedInOneLine) {
  const ModelConfig cfg = tiny_model();
  const TunedLens lens = perturbed_lens(11);
  const TempFile file;
  save_tuned_lens(file.path, lens, cfg, {{"checkpoint", "ck"}});
  const TunedLens back = load_tuned_lens(file.path, cfg);
  ASSERT_EQ(back.translators.size(), lens.translators.size());
  for (const auto& [site, t] : lens.translators) {
    EXPECT_TRUE(at::equal(back.translators.at(site).weight, t.weight)) << site;
    EXPECT_TRUE(at::equal(back.translators.at(site).bias, t.bias)) << site;
  }
  auto refused = [&](const std::string& path, const ModelConfig& model, const std::string& needle) {
    try {
      load_tuned_lens(path, model);
      ADD_FAILURE() << "accepted: " << needle;
    } catch (const FormatError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(needle), std::string::npos) << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << what;
      EXPECT_EQ(what.rfind(path, 0), 0u) << what;  // names the file first
    }
  };
  ModelConfig wider = cfg;
  wider.d_model = 32;
  refused(file.path, wider, "d_model 32");
  ModelConfig deeper = cfg;
  deeper.n_layer = 3;
  refused(file.path, deeper, "no translator for site 'blocks.1.resid_post'");
  ModelConfig shallower = cfg;
  shallower.n_layer = 1;
  refused(file.path, shallower, "is not the translator of a residual site");

  std::map<std::string, torch::Tensor> tensors = read_safetensors(file.path).tensors;
  const TempFile nan_file, plain_file;
  auto with_nan = tensors;
  with_nan["translators.blocks.0.resid_mid.bias"] = with_nan["translators.blocks.0.resid_mid.bias"].clone();
  with_nan["translators.blocks.0.resid_mid.bias"][3] = NAN;
  write_safetensors(nan_file.path, with_nan, {{"format", kTunedLensFormat}, {"version", "1"}});
  refused(nan_file.path, cfg, "holds NaN or Inf");
  write_safetensors(plain_file.path, tensors);  // no metadata: model weights, say
  refused(plain_file.path, cfg, "not a metalm tuned lens");
  EXPECT_THROW(load_tuned_lens(file.path + ".missing", cfg), IoError);
}

TEST(TunedLens, ConfigKeyTakesLogitOrTunedPath) {
  RunConfig c;
  c.analysis.lens = "tuned:/x/lens.safetensors";
  resolve(c);
  EXPECT_EQ(c.analysis.tuned_lens_path(), "/x/lens.safetensors");
  for (const char* bad : {"tuned:", "tuned", "logits", ""}) {
    RunConfig r;
    r.analysis.lens = bad;
    EXPECT_THROW(resolve(r), ConfigError) << bad;
  }
}

}  // namespace
}  // namespace metalm
