// An inner objective of one's own, plugged into the trajectory analyser. The
// library compares each block's update with the gradient of the logit-lens
// loss; here the question is another one: does a block move a token's state
// toward the embedding of the token that comes next? The objective is
//
//   ℓ_t(h) = ½ ‖h − e(x_{t+1})‖²,   gradient g = h − e(x_{t+1}),
//
// with e the model's token embedding (wte). The analyser needs only the
// Objective interface: a per-row loss, which positions have a target, and a
// random-target control.
//
//   next_embedding CHECKPOINT TOKEN_FILE
//
// TOKEN_FILE is a token file of `metalm prepare` (e.g. DATA/val.bin).
#include <metalm/metalm.hpp>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>

namespace {

class NextEmbeddingObjective final : public metalm::Objective {
 public:
  // embedding: [V, d]; targets: [B, T] next-token ids (negative: none).
  NextEmbeddingObjective(at::Tensor embedding, at::Tensor targets)
      : embedding_(embedding.detach()), targets_(std::move(targets)), flat_(targets_.reshape({-1})) {}

  // h: [N, d] states of the flat positions `rows` -> [N] losses. Each row
  // depends on its own state only, as the analyser requires.
  at::Tensor loss(const at::Tensor& h, const at::Tensor& rows) const override {
    const at::Tensor next = flat_.index_select(0, rows).clamp_min(0);                  // [N]
    const at::Tensor e = embedding_.index_select(0, next).to(h.scalar_type());         // [N, d]
    return 0.5 * (h - e).pow(2).sum(1);                                                 // [N]
  }

  at::Tensor valid() const override { return targets_.ge(0); }

  // The control: every target replaced by a uniformly drawn different token.
  std::unique_ptr<metalm::Objective> with_random_targets(uint64_t seed) const override {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    const int64_t V = embedding_.size(0);
    const at::Tensor shift = at::randint(1, V, targets_.sizes(), gen, at::TensorOptions(at::kLong));
    const at::Tensor random = at::where(targets_.ge(0), (targets_ + shift).remainder(V), targets_);
    return std::make_unique<NextEmbeddingObjective>(embedding_, random);
  }

  // The negative gradient at states [B, T, d]: e(x_{t+1}) − h.
  at::Tensor descent(const at::Tensor& h) const {
    return embedding_.index_select(0, flat_.clamp_min(0)).reshape(h.sizes()).to(h.scalar_type()) - h;
  }

 private:
  at::Tensor embedding_;  // [V, d]
  at::Tensor targets_;    // [B, T]
  at::Tensor flat_;       // [B*T]
};

double mean_of(const at::Tensor& values) { return metalm::summarize(values).mean; }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: next_embedding CHECKPOINT TOKEN_FILE\n");
    return 2;
  }
  try {
    metalm::LoadedCheckpoint checkpoint = metalm::load_checkpoint(argv[1]);
    metalm::CausalTransformer& model = checkpoint.model;
    model->eval();
    const metalm::TokenDataset data(argv[2]);
    const int64_t T = std::min<int64_t>(model->config().context, data.size() - 1);
    const metalm::Batch batch = metalm::fixed_eval_batches(data, 1, 4, T)[0];  // [4, T]

    // The states s_0 … s_L of every position (block granularity).
    const metalm::ModelTrajectory mt = metalm::capture_trajectory(model, batch.inputs, metalm::Granularity::Block);
    const NextEmbeddingObjective objective(model->embedding_table(), batch.targets);

    // A check of the objective first: a state moved by exactly one gradient
    // step of size 0.5 must come out with alignment 1 and step size 0.5.
    const at::Tensor s0 = mt.states[0];
    const at::Tensor stepped = s0 + 0.5 * objective.descent(s0);
    const metalm::Trajectory exact =
        metalm::analyze_trajectory({s0, stepped}, {"s0", "s0 - 0.5 g"}, objective);
    std::printf("exact gradient step: alignment %.6f step_size %.6f\n", mean_of(exact.steps[0].alignment),
                mean_of(exact.steps[0].step_size));

    // The model's own trajectory, against this objective and against the
    // library's logit lens, side by side.
    const metalm::Trajectory mine = metalm::analyze_trajectory(mt.states, mt.names, objective);
    const metalm::LensObjective lens = metalm::make_lens_objective(model, batch.targets);
    const metalm::Trajectory lensed = metalm::analyze_trajectory(mt.states, mt.names, lens);
    std::printf("%-40s %12s %12s %12s %12s\n", "step", "alignment", "random tgt", "step size", "lens align");
    for (size_t k = 0; k < mine.steps.size(); ++k) {
      const metalm::StepRecord& st = mine.steps[k];
      std::printf("%-40s %12.6f %12.6f %12.6f %12.6f\n", (st.from + " -> " + st.to).c_str(),
                  mean_of(st.alignment), mean_of(st.alignment_uniform), mean_of(st.step_size),
                  mean_of(lensed.steps[k].alignment));
    }
    std::printf("chance level 1/sqrt(d) = %.6f\n", 1.0 / std::sqrt(static_cast<double>(model->config().d_model)));

    // The same first-step alignment written out by hand, without autograd:
    // cos(Δ, −g) per position, averaged.
    const at::Tensor delta = (mt.states[1] - mt.states[0]).to(at::kDouble);   // [B, T, d]
    const at::Tensor down = objective.descent(mt.states[0]).to(at::kDouble);  // −g
    const at::Tensor cosine = (delta * down).sum(-1) / (delta.norm(2, {-1}) * down.norm(2, {-1}));
    std::printf("first step by hand: alignment %.6f\n", cosine.mean().item<double>());
  } catch (const metalm::Error& e) {
    std::fprintf(stderr, "next_embedding: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
