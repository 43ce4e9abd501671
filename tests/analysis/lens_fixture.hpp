// A small random logit lens (LayerNorm with statistics recomputed per state,
// then an affine unembedding), independent of the model class, for the
// analyser's tests.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "metalm/analysis/objective.hpp"
#include "metalm/analysis/tuned_lens.hpp"
#include "metalm/data/token_dataset.hpp"

namespace metalm::testing {

struct RandomLens {
  at::Tensor gamma, beta, w_u, b_u;  // [d], [d], [V, d], [V]

  RandomLens(int64_t d, int64_t vocab, uint64_t seed, at::ScalarType dtype = at::kDouble) {
    at::Generator gen = at::detail::createCPUGenerator(seed);
    const auto o = at::TensorOptions(dtype);
    gamma = 1.0 + 0.1 * at::normal(0.0, 1.0, {d}, gen, o);
    beta = 0.1 * at::normal(0.0, 1.0, {d}, gen, o);
    w_u = at::normal(0.0, 1.0, {vocab, d}, gen, o);
    b_u = 0.1 * at::normal(0.0, 1.0, {vocab}, gen, o);
  }

  LogitsFn fn() const {
    RandomLens self = *this;
    return [self](const at::Tensor& h) {  // [N, d] -> [N, V]
      const at::Tensor n = at::layer_norm(h, {h.size(-1)}, self.gamma, self.beta, 1e-5);
      return at::matmul(n, self.w_u.t()) + self.b_u;
    };
  }
};

// B windows of T uniformly random ids below `vocab`, targets shifted by one.
inline Batch random_token_batch(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  const at::Tensor ids = at::randint(0, vocab, {batch, seq + 1}, gen, at::TensorOptions(at::kLong));
  return {ids.narrow(1, 0, seq).contiguous(), ids.narrow(1, 1, seq).contiguous()};
}

// A tuned lens of an n_layer model whose translators are visibly not the
// identity: A = I + 0.3 N(0, 1), b = 0.5 N(0, 1) (float32).
inline TunedLens perturbed_tuned_lens(int64_t n_layer, int64_t d, uint64_t seed) {
  TunedLens lens = TunedLens::identity(n_layer, d);
  at::Generator gen = at::detail::createCPUGenerator(seed);
  for (auto& [site, t] : lens.translators) {
    t.weight = t.weight + 0.3 * at::normal(0.0, 1.0, {d, d}, gen, at::TensorOptions(at::kFloat));
    t.bias = 0.5 * at::normal(0.0, 1.0, {d}, gen, at::TensorOptions(at::kFloat));
  }
  return lens;
}

}  // namespace metalm::testing
