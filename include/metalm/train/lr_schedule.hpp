// The learning-rate schedule of the outer loop: linear warmup to train.lr,
// then either constant or a half cosine down to train.min_lr at the last step.
#pragma once

#include <cstdint>

#include "metalm/config/config.hpp"

namespace metalm {

// Learning rate of the update with 0-based index `step` (the update that
// turns the step-`step` model into the step-`step`+1 model):
//   step < warmup:  lr * (step + 1) / warmup        (never 0, peak at warmup - 1)
//   constant:       lr
//   cosine:         min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2,
//                   p = (step - warmup) / max(1, steps - 1 - warmup), clamped to [0, 1]
// so the cosine reaches min_lr exactly at the last update (steps - 1).
double lr_at(const TrainConfig& cfg, int64_t step);

}  // namespace metalm
