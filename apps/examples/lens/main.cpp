// The logit lens, layer by layer: loads a checkpoint, captures what every
// block's attention and MLP add to the residual stream with a Trace, and
// prints for each state the next-token loss the model would have if it read
// its prediction there (through its own final norm and unembedding), and the
// state's norm.
//
//   lens CHECKPOINT TEXT_FILE
//
// CHECKPOINT is a checkpoint directory or a run directory (its newest
// checkpoint). TEXT_FILE is encoded with the checkpoint's tokenizer; its first
// context + 1 tokens are read, each predicting the next.
#include <metalm/metalm.hpp>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace {

// Mean next-token loss (nats) of states h [1, T, d] read through the model's
// own final norm and unembedding, and their mean norm.
struct Reading {
  double loss, norm;
};
Reading read(metalm::CausalTransformer& model, const at::Tensor& h, const at::Tensor& targets) {
  const at::Tensor logits = model->lens_logits(h);  // [1, T, d] -> [1, T, V]
  const double loss = at::cross_entropy_loss(logits.flatten(0, 1), targets.flatten()).item<double>();
  return {loss, h.norm(2, {-1}).mean().item<double>()};
}

void print(const std::string& site, const Reading& r) {
  std::printf("%-22s %10.6f %10.4f\n", site.c_str(), r.loss, r.norm);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: lens CHECKPOINT TEXT_FILE\n");
    return 2;
  }
  try {
    metalm::LoadedCheckpoint checkpoint = metalm::load_checkpoint(argv[1]);
    metalm::CausalTransformer& model = checkpoint.model;
    model->eval();  // no dropout: the states of the deterministic forward pass
    at::NoGradGuard no_grad;

    // Tokens: the checkpoint records the tokenizer its data was prepared with.
    const auto tokenizer = metalm::make_tokenizer(checkpoint.state.tokenizer);
    std::vector<int64_t> ids = tokenizer->encode(metalm::read_file(argv[2]));
    ids.resize(std::min<size_t>(ids.size(), static_cast<size_t>(model->config().context) + 1));
    if (ids.size() < 2) throw metalm::ShapeError(std::string(argv[2]) + ": needs at least two tokens");
    const int64_t T = static_cast<int64_t>(ids.size()) - 1;
    const at::Tensor tokens = at::tensor(ids, at::kLong).unsqueeze(0);  // [1, T + 1]
    const at::Tensor inputs = tokens.narrow(1, 0, T), targets = tokens.narrow(1, 1, T);

    // One forward pass that also records three sites of every block.
    metalm::CaptureRequest request;
    request.sites = {metalm::Site::ResidPre, metalm::Site::AttnOut, metalm::Site::MlpOut};
    metalm::Trace trace;
    const at::Tensor logits = model->forward(inputs, request, trace);  // [1, T, V]

    // The residual stream is a running sum: resid_mid = resid_pre + attn_out
    // and resid_post = resid_mid + mlp_out = the next block's resid_pre.
    std::printf("%-22s %10s %10s\n", "site", "lens loss", "mean norm");
    at::Tensor state = trace.at(metalm::Site::ResidPre, 0);  // [1, T, d]
    for (int64_t l = 0; l < trace.n_layer(); ++l) {
      const at::Tensor& attn_out = trace.at(metalm::Site::AttnOut, l);
      const at::Tensor& mlp_out = trace.at(metalm::Site::MlpOut, l);
      print(metalm::site_name(metalm::Site::ResidPre, l), read(model, state, targets));
      std::printf("%-22s %10s %10.4f\n", metalm::site_name(metalm::Site::AttnOut, l).c_str(), "",
                  attn_out.norm(2, {-1}).mean().item<double>());
      state = state + attn_out;
      print(metalm::site_name(metalm::Site::ResidMid, l), read(model, state, targets));
      std::printf("%-22s %10s %10.4f\n", metalm::site_name(metalm::Site::MlpOut, l).c_str(), "",
                  mlp_out.norm(2, {-1}).mean().item<double>());
      state = state + mlp_out;
    }
    print("final", read(model, state, targets));

    // The lens of the last state is the model's own prediction.
    const double model_loss = at::cross_entropy_loss(logits.flatten(0, 1), targets.flatten()).item<double>();
    std::printf("model loss %.6f over %lld tokens\n", model_loss, static_cast<long long>(T));
  } catch (const metalm::Error& e) {
    std::fprintf(stderr, "lens: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
