// Tuned-lens training: on a small trained model the fitted translators read
// every state but the last closer to the model's own prediction than the
// logit lens does (held-out windows), the last state stays exact, and the
// model is left untouched.
#include <gtest/gtest.h>

#include <torch/optim/adamw.h>
#include <torch/utils.h>

#include "metalm/core/error.hpp"
#include "metalm/train/lens_train.hpp"
#include "train_fixture.hpp"

namespace metalm {
namespace {

CausalTransformer trained_model() {
  ModelConfig c = testing::small_config(16, 16, 32, 2);
  resolve(c);
  torch::manual_seed(21);
  CausalTransformer model(c);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-2));
  const std::vector<int64_t> ids = test::synthetic_tokens(8 * 17 * 40, 5);
  const at::Tensor all = at::tensor(ids, at::TensorOptions(at::kLong)).reshape({-1, 8, 17});
  for (int64_t step = 0; step < all.size(0); ++step) {
    opt.zero_grad();
    const at::Tensor seq = all[step];
    const at::Tensor logits = model->forward(seq.narrow(1, 0, 16));
    at::cross_entropy_loss(logits.reshape({-1, 16}), seq.narrow(1, 1, 16).reshape({-1})).backward();
    opt.step();
  }
  return model;
}

TEST(LensTrain, TunedLensBeatsTheLogitLensOnHeldOutWindows) {
  test::TempDir tmp;
  test::write_dataset(tmp.path(), 20000, 2000);
  CausalTransformer model = trained_model();
  std::vector<at::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
  const TokenDataset data(tmp / "train.bin");
  LensTrainOptions o;
  o.steps = 150;
  o.lr = 3e-3;
  o.log_every = 50;
  LensReport report;
  std::vector<int64_t> logged;
  const TunedLens lens = train_tuned_lens(model, data, o, &report, [&](int64_t step, double loss) {
    EXPECT_TRUE(std::isfinite(loss));
    logged.push_back(step);
  });
  EXPECT_EQ(logged, (std::vector<int64_t>{50, 100, 150}));
  ASSERT_EQ(report.sites.size(), 5u);  // resid_pre0, resid_mid0, resid_post0, resid_mid1, final
  ASSERT_EQ(report.kl_logit.size(), 5u);
  ASSERT_EQ(report.kl_tuned.size(), 5u);
  for (size_t k = 0; k + 1 < report.sites.size(); ++k) {
    EXPECT_LT(report.kl_tuned[k], report.kl_logit[k]) << report.sites[k];
    EXPECT_GE(report.kl_tuned[k], 0.0) << report.sites[k];
  }
  // The last state is the model's own readout: no translator, KL 0 both ways.
  EXPECT_EQ(report.sites.back(), "final");
  EXPECT_NEAR(report.kl_logit.back(), 0.0, 1e-6);
  EXPECT_NEAR(report.kl_tuned.back(), 0.0, 1e-6);
  // The held-out figures are those of lens_kl on the held-out windows.
  const LensData windows = lens_data(data, o, model->config().context);
  const std::vector<double> again = lens_kl(model, &lens, windows.heldout);
  for (size_t k = 0; k < again.size(); ++k) EXPECT_NEAR(again[k], report.kl_tuned[k], 1e-9);
  // Frozen: not a parameter moved, and gradients are enabled again.
  size_t i = 0;
  for (const auto& p : model->parameters()) {
    EXPECT_TRUE(at::equal(p, before[i++]));
    EXPECT_TRUE(p.requires_grad());
  }
}

TEST(LensTrain, HeldOutWindowsComeFromTheEndOfTheFileOnly) {
  // Token i of the file is the id i, so a window's first id is its start.
  test::TempDir tmp;
  std::vector<int64_t> ids(1000);
  for (int64_t i = 0; i < 1000; ++i) ids[i] = i;
  test::write_tokens(tmp / "pos.bin", ids, 1000);
  const TokenDataset data(tmp / "pos.bin");
  LensTrainOptions o;
  o.batch_size = 4;
  o.heldout_batches = 2;
  const int64_t T = 16;
  const LensData windows = lens_data(data, o, T);
  ASSERT_EQ(windows.heldout.size(), 2u);
  std::vector<int64_t> heldout;
  for (const auto& b : windows.heldout)
    for (int64_t r = 0; r < b.inputs.size(0); ++r) heldout.push_back(b.inputs[r][0].item<int64_t>());
  // Spread evenly from the split (token 900) to the last whole window.
  EXPECT_EQ(heldout.front(), 900);
  EXPECT_EQ(heldout.back(), 1000 - (T + 1));
  for (int64_t step = 0; step < 50; ++step) {
    const Batch b = windows.train_batch(step);
    ASSERT_EQ(b.inputs.size(0), 4);
    EXPECT_TRUE(at::equal(b.targets, b.inputs + 1));
    // No training window reaches into the held-out tokens 900..999.
    EXPECT_LT(b.targets.max().item<int64_t>(), 900) << "step " << step;
    EXPECT_TRUE(at::equal(b.inputs, windows.train_batch(step).inputs));  // a pure function of (seed, step)
  }
  EXPECT_THROW(lens_data(data, o, 200), FormatError);  // 100 held-out tokens hold no window of 201
}

}  // namespace
}  // namespace metalm
