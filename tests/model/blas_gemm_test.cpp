// The BLAS kernel in force (OpenBLAS's own pick, the user's OPENBLAS_CORETYPE
// or the launcher's choice: metalm/core/cpu.hpp) computes the model's
// products correctly: fp32 GEMMs at the shapes of the `byte` and `wider`
// configs, forward and both backward products, against float64 sums that
// call no BLAS, within the classical bound of a length-k dot product,
// |error| <= k * 2^-24 * |a_i|.|b_j| <= k * 2^-24 * ||a_i|| ||b_j|| (with a
// factor 2 of headroom).
// scripts/test.sh --blas-kernel NAME runs the suite with a forced kernel.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "metalm/model/device.hpp"
#include "metalm/model/runtime.hpp"

namespace metalm {
namespace {

// A @ B^T in float64 without a BLAS: elementwise products summed, a few
// rows at a time. A [m, k], B [n, k] -> [m, n].
at::Tensor reference_abt(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor a64 = a.to(at::kDouble), b64 = b.to(at::kDouble).unsqueeze(0);  // [1, n, k]
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < a.size(0); i += 8) {
    const at::Tensor block = a64.narrow(0, i, std::min<int64_t>(8, a.size(0) - i)).unsqueeze(1);  // [r, 1, k]
    rows.push_back((block * b64).sum(-1));                                                        // [r, n]
  }
  return at::cat(rows);
}

// Checks the fp32 product `got` = A @ B^T against the reference and bound.
void expect_within_bound(const at::Tensor& got, const at::Tensor& a, const at::Tensor& b, const std::string& what) {
  const at::Tensor want = reference_abt(a, b);
  // [m, 1] * [1, n]: the row norms' products bound every |a_i|.|b_j|.
  const at::Tensor scale = a.to(at::kDouble).norm(2, 1).unsqueeze(1) * b.to(at::kDouble).norm(2, 1).unsqueeze(0);
  const double eps = std::ldexp(1.0, -24);
  const at::Tensor bound = 2.0 * static_cast<double>(a.size(1)) * eps * scale + 1e-30;
  const at::Tensor excess = (got.to(at::kDouble) - want).abs() / bound;
  EXPECT_LE(excess.max().item<double>(), 1.0)
      << what << ": the BLAS kernel " << runtime_kernels().blas_kernel << " is off by "
      << (got.to(at::kDouble) - want).abs().max().item<double>() << " (largest |reference| "
      << want.abs().max().item<double>() << ")";
}

struct NamedShape {
  const char* name;
  ModelConfig model;
};

ModelConfig shape(int64_t vocab, int64_t layers, int64_t heads, int64_t d) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.n_layer = layers;
  c.n_head = heads;
  c.d_model = d;
  return c;
}

TEST(BlasGemm, TheKernelInForceMatchesFloat64AtTheModelsShapes) {
  at::manual_seed(0);
  // 19 rows: a full block of 16 and a ragged edge (the columns have theirs:
  // 257, and every product's inner dimension is the short one once).
  const int64_t rows = 19;
  for (const NamedShape& cfg : {NamedShape{"byte", shape(257, 4, 4, 256)}, NamedShape{"wider", shape(257, 6, 6, 384)}})
    for (const GemmShape& s : model_gemm_shapes(cfg.model, rows)) {
      const std::string what = std::string(cfg.name) + " [" + std::to_string(s.m) + ", " + std::to_string(s.k) +
                               "] x [" + std::to_string(s.n) + ", " + std::to_string(s.k) + "]^T";
      const at::Tensor x = at::randn({s.m, s.k}), w = at::randn({s.n, s.k}), dy = at::randn({s.m, s.n});
      expect_within_bound(at::linear(x, w), x, w, what + " forward");
      expect_within_bound(at::mm(dy, w), dy, w.t().contiguous(), what + " input gradient");
      expect_within_bound(at::mm(dy.t(), x), dy.t().contiguous(), x.t().contiguous(), what + " weight gradient");
    }
}

}  // namespace
}  // namespace metalm
