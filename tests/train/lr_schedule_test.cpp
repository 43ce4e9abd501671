#include <gtest/gtest.h>

#include <cmath>

#include "metalm/train/lr_schedule.hpp"

namespace metalm {
namespace {

TrainConfig schedule(LrSchedule kind) {
  TrainConfig c;
  c.steps = 111;  // decay span 111 - 1 - 10 = 100 updates
  c.warmup_steps = 10;
  c.lr = 1e-3;
  c.min_lr = 1e-4;
  c.schedule = kind;
  return c;
}

TEST(LrSchedule, WarmupRisesLinearlyToThePeak) {
  const auto c = schedule(LrSchedule::Cosine);
  EXPECT_DOUBLE_EQ(lr_at(c, 0), 1e-4);
  EXPECT_DOUBLE_EQ(lr_at(c, 4), 5e-4);
  EXPECT_DOUBLE_EQ(lr_at(c, 9), 1e-3);
}

TEST(LrSchedule, CosineStartsAtThePeakAndEndsAtMinLrOnTheLastStep) {
  const auto c = schedule(LrSchedule::Cosine);
  EXPECT_DOUBLE_EQ(lr_at(c, 10), 1e-3);
  // Halfway through the decay (p = 0.5): the mean of lr and min_lr.
  EXPECT_NEAR(lr_at(c, 60), 5.5e-4, 1e-15);
  // A quarter of the way: min + (lr - min) (1 + cos(pi/4)) / 2.
  EXPECT_NEAR(lr_at(c, 35), 1e-4 + 0.9e-3 * (1 + std::sqrt(0.5)) / 2, 1e-15);
  EXPECT_NEAR(lr_at(c, 110), 1e-4, 1e-15);
  EXPECT_NEAR(lr_at(c, 500), 1e-4, 1e-15);  // past the end: stays at min_lr
}

TEST(LrSchedule, CosineIsMonotoneAfterWarmup) {
  const auto c = schedule(LrSchedule::Cosine);
  for (int64_t s = 10; s < 110; ++s) EXPECT_GE(lr_at(c, s), lr_at(c, s + 1));
}

TEST(LrSchedule, ConstantKeepsThePeakAfterWarmup) {
  const auto c = schedule(LrSchedule::Constant);
  EXPECT_DOUBLE_EQ(lr_at(c, 4), 5e-4);
  EXPECT_DOUBLE_EQ(lr_at(c, 10), 1e-3);
  EXPECT_DOUBLE_EQ(lr_at(c, 110), 1e-3);
}

TEST(LrSchedule, NoWarmupStartsAtThePeak) {
  auto c = schedule(LrSchedule::Cosine);
  c.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(lr_at(c, 0), 1e-3);
}

}  // namespace
}  // namespace metalm
