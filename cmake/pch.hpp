// Precompiled header: the heavy, stable headers that most translation units
// include. Keep this list short; it is rebuilt whenever it changes.
#pragma once
#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/functional.h>
#include <torch/optim/adamw.h>
#include <torch/serialize.h>
#include <torch/autograd.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>
