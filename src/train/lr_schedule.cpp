#include "metalm/train/lr_schedule.hpp"

#include <algorithm>
#include <cmath>

namespace metalm {

double lr_at(const TrainConfig& cfg, int64_t step) {
  if (step < cfg.warmup_steps)
    return cfg.lr * static_cast<double>(step + 1) / static_cast<double>(cfg.warmup_steps);
  if (cfg.schedule == LrSchedule::Constant) return cfg.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, cfg.steps - 1 - cfg.warmup_steps));
  const double p = std::clamp(static_cast<double>(step - cfg.warmup_steps) / span, 0.0, 1.0);
  return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + std::cos(M_PI * p));
}

}  // namespace metalm
