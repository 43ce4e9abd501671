// The fused CPU kernels against ATen's own ops computed in float64: values
// and gradients, for every instruction set this CPU runs, in fp32 and bf16.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <limits>

#include "metalm/core/error.hpp"
#include "metalm/model/fused.hpp"

namespace metalm {
namespace {

// Reference: the exact GELU of y + bias in float64 through ATen.
at::Tensor reference_bias_gelu(const at::Tensor& y, const at::Tensor& bias) {
  return at::gelu(y.to(at::kDouble) + bias.to(at::kDouble));
}

// Reference: softmax of scale * s with keys after offset + i masked, float64.
at::Tensor reference_causal_softmax(const at::Tensor& s, double scale, int64_t offset) {
  const int64_t T = s.size(1), S = s.size(2);
  const at::Tensor keys = at::arange(S, at::kLong).unsqueeze(0);               // [1, S]
  const at::Tensor queries = at::arange(T, at::kLong).unsqueeze(1) + offset;  // [T, 1]
  const at::Tensor masked = keys > queries;                                   // [T, S]
  return at::softmax((s.to(at::kDouble) * scale).masked_fill(masked, -std::numeric_limits<double>::infinity()), -1);
}

// Values, and gradients of sum(out * weights), of a function of its inputs.
struct Result {
  at::Tensor out;
  std::vector<at::Tensor> grads;
};
template <class F>
Result run(F f, std::vector<at::Tensor> inputs, const at::Tensor& weights) {
  for (auto& t : inputs) t = t.detach().requires_grad_(true);
  at::Tensor out = f(inputs);
  const std::vector<at::Tensor> grads = torch::autograd::grad({(out.to(at::kDouble) * weights).sum()}, inputs);
  return {out.detach(), grads};
}

// |a - b| <= atol + rtol |b|, elementwise, with the worst element in the message.
void expect_close(const at::Tensor& actual, const at::Tensor& expected, double rtol, double atol, const std::string& what) {
  const at::Tensor a = actual.to(at::kDouble), b = expected.to(at::kDouble);
  const at::Tensor excess = (a - b).abs() - (atol + rtol * b.abs());
  EXPECT_LE(excess.max().item<double>(), 0.0)
      << what << ": worst |difference| " << (a - b).abs().max().item<double>() << " over the tolerance";
}

class FusedKernels : public ::testing::TestWithParam<FusedIsa> {};

TEST_P(FusedKernels, BiasGeluMatchesAtenInFp32ValuesAndGradients) {
  at::manual_seed(1);
  // 33 columns: one full 16-lane block, one more and a tail.
  const at::Tensor y = at::randn({4, 5, 33}) * 3.0, bias = at::randn({33}), w = at::randn({4, 5, 33}, at::kDouble);
  const Result fused = run([&](auto& in) { return bias_gelu(in[0], in[1], GetParam()); }, {y, bias}, w);
  const Result ref = run([](auto& in) { return reference_bias_gelu(in[0], in[1]); }, {y.to(at::kDouble), bias.to(at::kDouble)}, w);
  EXPECT_EQ(fused.out.scalar_type(), at::kFloat);
  expect_close(fused.out, ref.out, 1e-5, 2e-6, "gelu(y + b)");
  expect_close(fused.grads[0], ref.grads[0], 1e-5, 2e-6, "d/dy");
  expect_close(fused.grads[1], ref.grads[1], 1e-5, 2e-5, "d/dbias");
}

TEST_P(FusedKernels, BiasGeluWithoutBiasIsTheGelu) {
  at::manual_seed(2);
  const at::Tensor y = at::randn({7, 20}) * 4.0, w = at::randn({7, 20}, at::kDouble);
  const Result fused = run([&](auto& in) { return bias_gelu(in[0], at::Tensor(), GetParam()); }, {y}, w);
  const Result ref = run([](auto& in) { return at::gelu(in[0]); }, {y.to(at::kDouble)}, w);
  expect_close(fused.out, ref.out, 1e-5, 2e-6, "gelu(y)");
  expect_close(fused.grads[0], ref.grads[0], 1e-5, 2e-6, "d/dy");
}

TEST_P(FusedKernels, BiasGeluInBf16IsTheFp32ResultRoundedOnce) {
  at::manual_seed(3);
  const at::Tensor y = (at::randn({6, 40}) * 3.0).to(at::kBFloat16), bias = at::randn({40});
  // Weights a bf16 gradient carries exactly, so the only rounding is the kernel's.
  const at::Tensor w = at::randn({6, 40}).to(at::kBFloat16).to(at::kDouble);
  const Result fused = run([&](auto& in) { return bias_gelu(in[0], in[1], GetParam()); }, {y, bias}, w);
  const Result ref = run([](auto& in) { return reference_bias_gelu(in[0], in[1]); }, {y.to(at::kDouble), bias.to(at::kDouble)}, w);
  EXPECT_EQ(fused.out.scalar_type(), at::kBFloat16);
  EXPECT_EQ(fused.grads[0].scalar_type(), at::kBFloat16);
  EXPECT_EQ(fused.grads[1].scalar_type(), at::kFloat);
  // One rounding to bf16 (8 significant bits): at most 2^-8 relative.
  expect_close(fused.out, ref.out, 1.0 / 256, 1e-6, "bf16 gelu(y + b)");
  expect_close(fused.grads[0], ref.grads[0], 1.0 / 256, 1e-6, "bf16 d/dy");
  // The bias gradient sums unrounded fp32 terms.
  expect_close(fused.grads[1], ref.grads[1], 1e-5, 2e-5, "bf16 d/dbias");
}

TEST_P(FusedKernels, CausalSoftmaxMatchesAtenWithTheMaskInFp32) {
  at::manual_seed(4);
  // offset 0 (training) and offset 5 (decoding after a cached prefix); 37
  // keys cover the 16-lane blocks and a tail.
  for (int64_t offset : {0, 5}) {
    const int64_t T = 32, S = T + offset;
    const at::Tensor s = at::randn({3, T, S}) * 4.0, w = at::randn({3, T, S}, at::kDouble);
    const double scale = 0.125;
    const Result fused = run([&](auto& in) { return causal_softmax(in[0], scale, offset, GetParam()); }, {s}, w);
    const Result ref =
        run([&](auto& in) { return reference_causal_softmax(in[0], scale, offset); }, {s.to(at::kDouble)}, w);
    expect_close(fused.out, ref.out, 1e-5, 1e-7, "softmax, offset " + std::to_string(offset));
    expect_close(fused.grads[0], ref.grads[0], 1e-5, 1e-7, "d/ds, offset " + std::to_string(offset));
    // Above the diagonal: exactly zero, in the weights and their gradient.
    const at::Tensor masked = at::arange(S).unsqueeze(0) > at::arange(T).unsqueeze(1) + offset;
    EXPECT_EQ(fused.out.masked_select(masked).abs().max().item<float>(), 0.0f);
    EXPECT_EQ(fused.grads[0].masked_select(masked).abs().max().item<float>(), 0.0f);
  }
}

TEST_P(FusedKernels, CausalSoftmaxInBf16IsTheFp32ResultRoundedOnce) {
  at::manual_seed(5);
  const at::Tensor s = (at::randn({2, 24, 24}) * 4.0).to(at::kBFloat16);
  const at::Tensor w = at::randn({2, 24, 24}).to(at::kBFloat16).to(at::kDouble);
  const Result fused = run([&](auto& in) { return causal_softmax(in[0], 0.25, 0, GetParam()); }, {s}, w);
  const Result ref = run([](auto& in) { return reference_causal_softmax(in[0], 0.25, 0); }, {s.to(at::kDouble)}, w);
  EXPECT_EQ(fused.out.scalar_type(), at::kBFloat16);
  expect_close(fused.out, ref.out, 1.0 / 256, 1e-7, "bf16 softmax");
  // The gradient reads p in bf16: p's rounding and the result's.
  expect_close(fused.grads[0], ref.grads[0], 1.0 / 64, 1e-3, "bf16 d/ds");
}

TEST_P(FusedKernels, NonFiniteInputsStayNonFinite) {
  // A NaN must reach the loss (the trainer's non-finite check), not vanish.
  at::Tensor y = at::zeros({2, 17});
  y[1][3] = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor h = bias_gelu(y, at::Tensor(), GetParam());
  EXPECT_TRUE(std::isnan(h[1][3].item<float>()));
  EXPECT_TRUE(at::isfinite(h[0]).all().item<bool>());
  at::Tensor s = at::zeros({1, 4, 4});
  s[0][2][1] = std::numeric_limits<float>::quiet_NaN();
  const at::Tensor p = causal_softmax(s, 1.0, 0, GetParam());
  EXPECT_TRUE(at::isnan(p[0][2].narrow(0, 0, 3)).all().item<bool>());
  EXPECT_TRUE(at::isfinite(p[0][1]).all().item<bool>());
  EXPECT_TRUE(std::isnan(causal_softmax(s.to(at::kBFloat16), 1.0, 0, GetParam())[0][2][0].item<float>()));
}

TEST_P(FusedKernels, GradientsDoNotDependOnTheNumberOfThreads) {
  // Resume and data-parallel runs compare bit for bit: the bias gradient's
  // sum must not change with --threads.
  at::manual_seed(6);
  const at::Tensor y = at::randn({64, 1024}).to(at::kBFloat16), bias = at::randn({1024});
  const at::Tensor w = at::randn({64, 1024}, at::kDouble);
  const int threads = at::get_num_threads();
  std::vector<Result> results;
  for (int n : {1, 2, 3}) {
    at::set_num_threads(n);
    results.push_back(run([&](auto& in) { return bias_gelu(in[0], in[1], GetParam()); }, {y, bias}, w));
  }
  at::set_num_threads(threads);
  for (size_t i = 1; i < results.size(); ++i) {
    EXPECT_TRUE(at::equal(results[i].out, results[0].out));
    EXPECT_TRUE(at::equal(results[i].grads[0], results[0].grads[0]));
    EXPECT_TRUE(at::equal(results[i].grads[1], results[0].grads[1]));
  }
}

INSTANTIATE_TEST_SUITE_P(EverySupportedIsa, FusedKernels, ::testing::ValuesIn(fused_isas_supported()),
                         [](const auto& info) { return fused_isa_name(info.param); });

TEST(FusedKernelsInput, WrongDtypesAndShapesAreShapeErrorsNamingTheArgument) {
  const auto message = [](auto f) {
    try {
      f();
    } catch (const ShapeError& e) {
      return std::string(e.what());
    }
    return std::string("no ShapeError");
  };
  EXPECT_NE(message([] { bias_gelu(at::zeros({2, 3}, at::kDouble), at::Tensor()); }).find("bias_gelu: y"),
            std::string::npos);
  EXPECT_NE(message([] { bias_gelu(at::zeros({2, 3}), at::zeros({4})); }).find("bias must be float32 [3]"),
            std::string::npos);
  EXPECT_NE(message([] { causal_softmax(at::zeros({4, 4}), 1.0, 0); }).find("[N, T, S]"), std::string::npos);
  EXPECT_NE(message([] { causal_softmax(at::zeros({1, 4, 4}), 1.0, -1); }).find("offset"), std::string::npos);
}

TEST(FusedKernelsInput, TheBestIsaIsTheWidestSupported) {
  EXPECT_EQ(fused_isa_name(FusedIsa::Best), fused_isa_name(fused_isas_supported().front()));
  EXPECT_EQ(fused_isas_supported().back(), FusedIsa::Generic);
}

}  // namespace
}  // namespace metalm
