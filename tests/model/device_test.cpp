// Device selection and the precision scopes: bf16 autocast around a forward
// pass, full precision inside it for the analyser.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>

#include "metalm/core/error.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/device.hpp"
#include "tiny_configs.hpp"

namespace metalm {
namespace {

TEST(Device, CpuIsTheCpuAndAutoFallsBackToIt) {
  EXPECT_TRUE(resolve_device(DeviceKind::Cpu).is_cpu());
  EXPECT_EQ(resolve_device(DeviceKind::Auto).is_cuda(), torch::cuda::is_available());
}

TEST(Device, CudaWithoutCudaIsAConfigErrorNamingTheSetting) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this libtorch has CUDA";
  try {
    resolve_device(DeviceKind::Cuda, "--device");
    FAIL() << "no error";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--device = cuda"), std::string::npos) << e.what();
  }
}

TEST(Precision, Bf16ScopeRunsMatmulsInBf16AndRestoresTheState) {
  const at::Tensor x = at::randn({4, 8}), w = at::randn({3, 8});
  ASSERT_FALSE(at::autocast::is_cpu_enabled());
  {
    AutocastScope scope(Precision::Bf16, c10::Device(c10::kCPU));
    EXPECT_EQ(at::linear(x, w).scalar_type(), at::kBFloat16);
    {
      FullPrecisionScope exact;  // what the analyser runs in
      EXPECT_EQ(at::linear(x, w).scalar_type(), at::kFloat);
    }
    EXPECT_EQ(at::linear(x, w).scalar_type(), at::kBFloat16);
  }
  EXPECT_FALSE(at::autocast::is_cpu_enabled());
  EXPECT_EQ(at::linear(x, w).scalar_type(), at::kFloat);
  {
    AutocastScope scope(Precision::Fp32, c10::Device(c10::kCPU));
    EXPECT_EQ(at::linear(x, w).scalar_type(), at::kFloat);
  }
}

// native_bf16 against the compiler's own CPUID query (independent of the
// /proc/cpuinfo flags it reads); every CPU with AMX-BF16 also has
// AVX512-BF16. auto never picks an emulated bf16, and an AutocastScope given
// auto runs in what resolve_precision chose.
TEST(Precision, AutoIsFp32WithoutNativeBf16AndAutocastFollowsTheChoice) {
  const c10::Device cpu(c10::kCPU), cuda(c10::kCUDA, 0);
  EXPECT_EQ(resolve_precision(Precision::Fp32, cpu), Precision::Fp32);
  EXPECT_EQ(resolve_precision(Precision::Bf16, cpu), Precision::Bf16);
  EXPECT_EQ(resolve_precision(Precision::Auto, cuda), Precision::Bf16);
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool cpuid = __builtin_cpu_supports("avx512bf16") != 0;
  EXPECT_EQ(native_bf16(cpu), cpuid);
#endif
  const Precision chosen = resolve_precision(Precision::Auto, cpu);
  if (!native_bf16(cpu)) {
    EXPECT_EQ(chosen, Precision::Fp32);
  }
  const at::Tensor x = at::randn({4, 8}), w = at::randn({3, 8});
  AutocastScope scope(Precision::Auto, cpu);
  EXPECT_EQ(at::linear(x, w).scalar_type(), chosen == Precision::Bf16 ? at::kBFloat16 : at::kFloat);
}

// The model under bf16 autocast computes the same function to bf16's
// precision (8 bits of mantissa): its loss is within a percent of fp32's.
TEST(Precision, Bf16ForwardMatchesFp32ToBf16Precision) {
  torch::manual_seed(0);
  ModelConfig cfg = testing::tiny_config();
  cfg.init_std = 0.05;
  CausalTransformer model(cfg);
  const at::Tensor tokens = at::randint(0, cfg.vocab_size, {2, 16}, at::kLong);
  const at::Tensor targets = at::randint(0, cfg.vocab_size, {32}, at::kLong);
  at::NoGradGuard no_grad;
  const at::Tensor fp32 = model->forward(tokens);
  at::Tensor bf16;
  {
    AutocastScope scope(Precision::Bf16, model->device());
    bf16 = model->forward(tokens);
  }
  EXPECT_EQ(bf16.scalar_type(), at::kBFloat16);
  const double l32 = at::cross_entropy_loss(fp32.reshape({32, -1}), targets).item<double>();
  const double l16 = at::cross_entropy_loss(bf16.to(at::kFloat).reshape({32, -1}), targets).item<double>();
  EXPECT_NEAR(l16, l32, 0.01 * l32);
  EXPECT_LT((bf16.to(at::kFloat) - fp32).abs().max().item<double>(), 0.05 * fp32.abs().max().item<double>());
}

}  // namespace
}  // namespace metalm
