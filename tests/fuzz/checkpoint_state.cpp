// Fuzz target: a checkpoint's state.json, loaded by load_checkpoint and then
// restored as `metalm train --resume` restores it: the generator state, the
// data sampler's state and the trainer's fields of "extra". What it accepts
// must agree with itself (the sampler's counter with the step). The rest of the
// checkpoint (step 2 of a tiny model, with optimizer state) is written once
// by save_checkpoint; only state.json comes from the fuzzer.
#include <torch/optim/adamw.h>

#include "fuzz_util.hpp"
#include "metalm/config/config.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/data/token_file.hpp"
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/rng_state.hpp"
#include "metalm/train/sharded_sampler.hpp"

namespace {

struct Fixture {
  std::string checkpoint;
  metalm::RunConfig config;
  std::unique_ptr<metalm::TokenDataset> tokens;
};

// A complete checkpoint of step 2 as training leaves it (with optimizer
// state), in a run directory, and a token file for its sampler.
const Fixture& fixture() {
  static const Fixture* f = [] {
    using namespace metalm;
    auto* out = new Fixture;
    RunConfig& c = out->config;
    c.model.vocab_size = 16;
    c.model.context = 8;
    c.model.d_model = 8;
    c.model.n_layer = 1;
    c.model.n_head = 1;
    // The sampler of the seed corpus' states: 2 windows of 8 tokens, seed 1337.
    c.train.batch_size = 2;
    c.train.seq_len = 8;
    resolve(c);
    out->checkpoint = checkpoint_dir(fuzz::scratch_dir() + "/run", 2);
    CausalTransformer model(c.model);
    torch::optim::AdamW optimizer(model->parameters());
    CheckpointState state;
    state.step = 2;
    save_checkpoint(out->checkpoint, c, model, &optimizer, state);
    const std::string bin = fuzz::scratch_dir() + "/train.bin";
    TokenFileWriter writer(bin, c.model.vocab_size);
    std::vector<int64_t> ids;
    for (int64_t i = 0; i < 64; ++i) ids.push_back(i % c.model.vocab_size);
    writer.append(ids);
    writer.finish();
    out->tokens = std::make_unique<TokenDataset>(bin);
    return out;
  }();
  return *f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  const Fixture& f = fixture();
  fuzz::write_scratch("run/checkpoints/step_00000002/state.json", fuzz::as_text(data, size));
  fuzz::expect_errors([&] {
    const LoadedCheckpoint ckpt = load_checkpoint(f.checkpoint);
    const CheckpointState& state = ckpt.state;
    fuzz::require(state.step >= 0, "the step is non-negative");
    // A state load_checkpoint accepts holds together: without a change of
    // grad_accum (sampler_origin), the sampler drew one micro-batch per step.
    if (state.sampler.is_object() && !state.extra.contains("sampler_origin"))
      fuzz::require(state.sampler["step"] == state.step * f.config.train.grad_accum,
                    "the sampler's counter follows from the step");
    // What Trainer reads from a loaded state when it resumes.
    (void)state.extra.value("best_step", int64_t{-1});
    (void)state.extra.value("elapsed_s", 0.0);
    ShardedWindowSampler sampler(*f.tokens, f.config.train.batch_size, f.config.train.seq_len,
                                 static_cast<uint64_t>(f.config.train.seed), 0, 1);
    sampler.restore(state.sampler);
    const Batch batch = sampler.next();
    fuzz::require(batch.inputs.size(0) == f.config.train.batch_size, "a restored sampler draws full batches");
    restore_rng_state(state.rng);
  });
  return 0;
}
