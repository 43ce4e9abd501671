// A complete training loop written from the library's parts, without the
// Trainer: data windows, model, AdamW, learning-rate schedule, gradient
// clipping, evaluation and a checkpoint that `metalm eval`, `analyze` and
// `generate` read like any other.
//
//   train_loop DATA_DIR OUT_CHECKPOINT_DIR [STEPS]
//
// DATA_DIR holds train.bin, val.bin and meta.json from `metalm prepare`.
#include <metalm/metalm.hpp>

#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string>

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: train_loop DATA_DIR OUT_CHECKPOINT_DIR [STEPS]\n");
    return 2;
  }
  try {
    const std::string data_dir = argv[1];
    const metalm::DatasetMeta meta = metalm::read_dataset_meta(data_dir);

    // The experiment: a small model, defaults for everything not set here.
    metalm::RunConfig config;
    config.name = "train_loop";
    config.data.dir = data_dir;
    config.model.vocab_size = meta.vocab_size;
    config.model.context = 64;
    config.model.d_model = 64;
    config.model.n_layer = 2;
    config.model.n_head = 2;
    config.train.steps = argc == 4 ? std::stoll(argv[3]) : 60;
    config.train.batch_size = 8;
    config.train.lr = 3e-3;
    config.train.min_lr = 3e-4;
    config.train.warmup_steps = 10;
    metalm::resolve(config);  // fills derived values (seq_len, d_mlp) and validates
    const metalm::TrainConfig& tc = config.train;

    const metalm::TokenDataset train(data_dir + "/train.bin"), val(data_dir + "/val.bin");
    metalm::RandomWindowSampler sampler(train, tc.batch_size, tc.seq_len, static_cast<uint64_t>(tc.seed));
    const std::vector<metalm::Batch> val_batches = metalm::fixed_eval_batches(val, 4, tc.batch_size, tc.seq_len);
    auto evaluate = [&](int64_t step, metalm::CausalTransformer& model) {
      const metalm::EvalResult r = metalm::evaluate_batches(model, val_batches);
      std::printf("eval step %lld val_loss %.4f bits/byte %.3f\n", static_cast<long long>(step), r.loss,
                  r.bits_per_byte(meta.bytes_per_token(meta.val)));
      return r.loss;
    };

    torch::manual_seed(static_cast<uint64_t>(tc.seed));  // initialisation and dropout
    metalm::CausalTransformer model(config.model);
    model->train();
    const auto optimizer = metalm::make_optimizer(model, tc);  // decay on matrices only
    const std::vector<at::Tensor> params = model->parameters();
    std::printf("%lld parameters\n", static_cast<long long>(metalm::count_parameters(*model)));

    double val_loss = evaluate(0, model);
    for (int64_t step = 0; step < tc.steps; ++step) {
      const double lr = metalm::lr_at(tc, step);  // warmup, then cosine to min_lr
      metalm::set_learning_rate(*optimizer, lr);
      optimizer->zero_grad();
      double loss_sum = 0;
      for (int64_t micro = 0; micro < tc.grad_accum; ++micro) {
        const metalm::Batch batch = sampler.next();                              // [B, T] inputs, targets
        const at::Tensor logits = model->forward(batch.inputs);                  // [B, T, V]
        const at::Tensor loss = at::cross_entropy_loss(logits.flatten(0, 1), batch.targets.flatten());
        (loss / static_cast<double>(tc.grad_accum)).backward();
        loss_sum += loss.item<double>();
      }
      const double grad_norm = metalm::global_grad_norm(params);
      if (!std::isfinite(grad_norm)) throw metalm::NumericError("non-finite gradient at step " + std::to_string(step));
      metalm::clip_gradients(params, grad_norm, tc.grad_clip);
      optimizer->step();
      if ((step + 1) % 10 == 0)
        std::printf("step %lld loss %.4f lr %.2e grad_norm %.3f\n", static_cast<long long>(step + 1),
                    loss_sum / static_cast<double>(tc.grad_accum), lr, grad_norm);
    }
    val_loss = evaluate(tc.steps, model);

    // Everything a resumed run would need, in the format every command reads.
    metalm::CheckpointState state;
    state.step = tc.steps;
    state.tokenizer = meta.tokenizer;
    state.best_val_loss = val_loss;
    state.rng = metalm::capture_rng_state();
    state.sampler = sampler.state();
    metalm::save_checkpoint(argv[2], config, model, optimizer.get(), state);
    std::printf("checkpoint %s\n", argv[2]);
  } catch (const metalm::Error& e) {
    std::fprintf(stderr, "train_loop: error: %s\n", e.what());
    return 1;
  } catch (const std::logic_error& e) {  // std::stoll on a bad STEPS
    std::fprintf(stderr, "train_loop: error: STEPS must be an integer\n");
    return 2;
  }
  return 0;
}
