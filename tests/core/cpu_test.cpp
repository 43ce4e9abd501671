// The kernel choices of metalm/core/cpu.hpp: what the launcher sets for
// OpenBLAS and ATen from the library's own pick and the CPU's flags, and
// that a value the user set always wins.
#include <gtest/gtest.h>

#include "metalm/core/cpu.hpp"

namespace metalm {
namespace {

CpuInfo cpu_with(std::vector<std::string> flags) { return CpuInfo{"test cpu", std::move(flags)}; }

const CpuInfo kXeonAvx512 = cpu_with({"sse3", "avx", "avx2", "fma", "avx512f", "avx512dq", "avx512bw", "avx512vl",
                                      "avx512_bf16"});
const CpuInfo kAvx2 = cpu_with({"sse3", "avx", "avx2", "fma"});
const CpuInfo kSse = cpu_with({"sse3", "ssse3", "sse4_2"});

TEST(CpuInfo, ParsesTheFirstProcessorsModelAndFlags) {
  const std::string text =
      "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 207\nmodel name\t: Intel(R) Xeon(R) Platinum 8580\n"
      "flags\t\t: fpu sse3 avx2 fma avx512f\nbugs\t\t: spectre_v1\n\nprocessor\t: 1\nmodel name\t: other\n"
      "flags\t\t: fpu\n";
  const CpuInfo cpu = parse_cpuinfo(text);
  EXPECT_EQ(cpu.model, "Intel(R) Xeon(R) Platinum 8580");
  EXPECT_EQ(cpu.flags, (std::vector<std::string>{"fpu", "sse3", "avx2", "fma", "avx512f"}));
  EXPECT_TRUE(cpu.has("avx2"));
  EXPECT_FALSE(cpu.has("avx"));
  const CpuInfo none = parse_cpuinfo("no cpuinfo here\n");
  EXPECT_EQ(none.model, "");
  EXPECT_TRUE(none.flags.empty());
}

TEST(IsaLevel, NeedsEveryFlagOfItsClass) {
  EXPECT_EQ(isa_level(kXeonAvx512), IsaLevel::Avx512);
  EXPECT_EQ(isa_level(kAvx2), IsaLevel::Avx2);
  EXPECT_EQ(isa_level(kSse), IsaLevel::Baseline);
  // AVX-512 without VL (Knights Landing) runs no SkylakeX kernel; AVX2
  // without FMA is no Haswell.
  EXPECT_EQ(isa_level(cpu_with({"avx2", "fma", "avx512f", "avx512bw", "avx512dq"})), IsaLevel::Avx2);
  EXPECT_EQ(isa_level(cpu_with({"avx", "avx2"})), IsaLevel::Baseline);
}

TEST(BlasKernel, FallbacksArePreAvxKernelsWhateverTheirCase) {
  for (const char* k : {"Prescott", "prescott", "Core2", "Nehalem", "Penryn", "Dunnington", "Atom", "Katmai",
                        "Barcelona", "Unknown"})
    EXPECT_TRUE(is_fallback_blas_kernel(k)) << k;
  for (const char* k : {"Sandybridge", "Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", ""})
    EXPECT_FALSE(is_fallback_blas_kernel(k)) << k;
}

TEST(BlasKernel, AFallbackOnAnAvx512CpuBecomesSkylakeX) {
  const KernelChoice c = choose_blas_kernel("Prescott", "", isa_level(kXeonAvx512));
  EXPECT_EQ(c.set_by, SetBy::Metalm);
  EXPECT_EQ(c.value, "SkylakeX");
  EXPECT_NE(c.reason.find("Prescott"), std::string::npos) << c.reason;
}

TEST(BlasKernel, AFallbackOnAnAvx2CpuBecomesHaswell) {
  const KernelChoice c = choose_blas_kernel("Nehalem", "", IsaLevel::Avx2);
  EXPECT_EQ(c.set_by, SetBy::Metalm);
  EXPECT_EQ(c.value, "Haswell");
}

TEST(BlasKernel, OpenBlassOwnModernPickIsKept) {
  for (const char* k : {"Haswell", "Zen", "SkylakeX", "Cooperlake", "Sandybridge"}) {
    const KernelChoice c = choose_blas_kernel(k, "", IsaLevel::Avx512);
    EXPECT_EQ(c.set_by, SetBy::Library) << k;
    EXPECT_EQ(c.value, "") << k;
  }
}

TEST(BlasKernel, AFallbackOnAnOldCpuIsKept) {
  EXPECT_EQ(choose_blas_kernel("Prescott", "", IsaLevel::Baseline).set_by, SetBy::Library);
}

TEST(BlasKernel, NotOpenBlasMeansNothingToChoose) {
  const KernelChoice c = choose_blas_kernel("", "", IsaLevel::Avx512);
  EXPECT_EQ(c.set_by, SetBy::Library);
  EXPECT_EQ(c.value, "");
}

TEST(BlasKernel, TheUsersValueWins) {
  // Even a fallback the user asked for (e.g. to work around a broken kernel).
  const KernelChoice c = choose_blas_kernel("Prescott", "Prescott", IsaLevel::Avx512);
  EXPECT_EQ(c.set_by, SetBy::User);
  EXPECT_EQ(c.value, "");
  EXPECT_EQ(choose_blas_kernel("Cooperlake", "Haswell", IsaLevel::Avx512).set_by, SetBy::User);
}

TEST(AtenCapability, Avx512OnlyWhenPreferredAndSupported) {
  EXPECT_EQ(choose_aten_capability("", IsaLevel::Avx512, false).set_by, SetBy::Library);
  const KernelChoice on = choose_aten_capability("", IsaLevel::Avx512, true);
  EXPECT_EQ(on.set_by, SetBy::Metalm);
  EXPECT_EQ(on.value, "avx512");
  EXPECT_EQ(choose_aten_capability("", IsaLevel::Avx2, true).set_by, SetBy::Library);
  EXPECT_EQ(choose_aten_capability("default", IsaLevel::Avx512, true).set_by, SetBy::User);
}

TEST(KernelChoice, RoundTripsThroughItsEnvironmentValue) {
  const KernelChoice c = choose_blas_kernel("Prescott", "", IsaLevel::Avx512);
  KernelChoice back;
  ASSERT_TRUE(parse_choice(format_choice(c), back));
  EXPECT_EQ(back.set_by, c.set_by);
  EXPECT_EQ(back.value, c.value);
  EXPECT_EQ(back.reason, c.reason);
  KernelChoice untouched{"x", SetBy::User, "kept"};
  for (const char* bad : {"", "metalm", "metalm|SkylakeX", "someone|a|b"})
    EXPECT_FALSE(parse_choice(bad, untouched)) << bad;
  EXPECT_EQ(untouched.value, "x");
}

// The BLAS this process would load: a library that is not there is
// reported empty; OpenBLAS (when libblas.so.3 is OpenBLAS) names its kernel.
TEST(BlasLibrary, ProbesWhatTheNameResolvesTo) {
  EXPECT_EQ(probe_blas_library("libmetalm-no-such-blas.so.3").path, "");
  const BlasLibrary lib = probe_blas_library();
  if (lib.path.empty()) GTEST_SKIP() << "no libblas.so.3 on this machine";
  if (lib.config.rfind("OpenBLAS", 0) == 0) {
    EXPECT_FALSE(lib.corename.empty());
  }
}

}  // namespace
}  // namespace metalm
