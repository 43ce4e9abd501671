// Causal tests of the inner optimization from C++: for every block, take the
// part of its update that lies along the logit-lens gradient out of the
// residual stream, let the rest of the model run from the edited state, and
// see how much the model's own loss rises; then the same with an equally
// large random part, with the radial part, and with the update rescaled.
// The library does it in one call (intervene_model); the first block's
// "remove the gradient part" is also done here by hand from the parts
// (capture_trajectory, the lens objective, loss_and_grad, forward_from), and
// both numbers are printed.
//
//   intervene CHECKPOINT TOKEN_FILE
//
// TOKEN_FILE is a token file of `metalm prepare` (e.g. DATA/val.bin).
#include <metalm/metalm.hpp>

#include <cstdio>
#include <string>

namespace {

double mean_of(const nlohmann::json& effect) { return effect["mean"].get<double>(); }

// Mean next-token loss (nats) of logits [B, T, V] against targets [B, T].
at::Tensor losses(const at::Tensor& logits, const at::Tensor& targets) {
  return at::cross_entropy_loss(logits.flatten(0, 1), targets.flatten(), {}, at::Reduction::None);  // [B*T]
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: intervene CHECKPOINT TOKEN_FILE\n");
    return 2;
  }
  try {
    metalm::LoadedCheckpoint checkpoint = metalm::load_checkpoint(argv[1]);
    metalm::CausalTransformer& model = checkpoint.model;
    const metalm::TokenDataset data(argv[2]);
    const std::vector<metalm::Batch> batches = metalm::fixed_eval_batches(data, 1, 4, 32);

    // The library: every step, every intervention, 95% intervals over sequences.
    metalm::AnalysisConfig analysis;  // block granularity, the logit lens
    metalm::InterveneOptions options;   // alphas 0, 0.5, 1, 1.5, 2
    const nlohmann::json result = metalm::intervene_model(model, batches, analysis, options);
    std::printf("model loss %.6f over %lld tokens\n", result["final_loss"].get<double>(),
                static_cast<long long>(result["tokens"].get<int64_t>()));
    for (const auto& st : result["steps"])
      std::printf("%s -> %s remove_gradient %.6f remove_random %.6f remove_radial %.6f alpha_min %s\n",
                  st["from"].get<std::string>().c_str(), st["to"].get<std::string>().c_str(),
                  mean_of(st["remove_gradient"]), mean_of(st["remove_random"]), mean_of(st["remove_radial"]),
                  st["alpha_min"].dump().c_str());

    // By hand, block 0: s_0 -> s_1 = s_0 + Δ, g the lens gradient at s_0.
    model->eval();
    const metalm::Batch& batch = batches[0];
    const metalm::ModelTrajectory tr = metalm::capture_trajectory(model, batch.inputs, metalm::Granularity::Block);
    const int64_t B = batch.inputs.size(0), T = batch.inputs.size(1), d = model->config().d_model;
    const at::Tensor s0 = tr.states[0].reshape({-1, d}), s1 = tr.states[1].reshape({-1, d});  // [B*T, d]
    const metalm::LensObjective lens = metalm::make_lens_objective(model, batch.targets);
    const at::Tensor rows = at::arange(B * T, at::kLong);  // every position of a token file has a next token
    const at::Tensor g = metalm::loss_and_grad(lens, s0, rows).grad;  // [B*T, d]
    const at::Tensor delta = s1 - s0;
    const at::Tensor edited = s0 + delta - ((delta * g).sum(1, true) / (g * g).sum(1, true)) * g;
    at::NoGradGuard no_grad;
    const at::Tensor before = losses(tr.logits, batch.targets);
    const at::Tensor after = losses(model->forward_from(edited.reshape({B, T, d}), 1, metalm::Granularity::Block),
                                    batch.targets);
    std::printf("first step by hand remove_gradient %.6f\n", (after - before).mean().item<double>());
  } catch (const metalm::Error& e) {
    std::fprintf(stderr, "intervene: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
