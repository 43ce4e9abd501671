#include "metalm/train/rng_state.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <mutex>
#include <string>

#include "metalm/core/error.hpp"

namespace metalm {
namespace {

constexpr char kHex[] = "0123456789abcdef";

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

}  // namespace

nlohmann::json capture_rng_state() {
  auto gen = at::detail::getDefaultCPUGenerator();
  at::Tensor state;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    state = gen.get_state();  // uint8 [n]
  }
  const auto* bytes = state.data_ptr<uint8_t>();
  std::string hex;
  hex.reserve(static_cast<std::size_t>(state.numel()) * 2);
  for (int64_t i = 0; i < state.numel(); ++i) {
    hex += kHex[bytes[i] >> 4];
    hex += kHex[bytes[i] & 15];
  }
  return {{"torch_cpu", hex}};
}

void restore_rng_state(const nlohmann::json& state) {
  if (!state.is_object() || !state.contains("torch_cpu") || !state["torch_cpu"].is_string())
    throw FormatError("rng state: expected {\"torch_cpu\": \"<hex>\"}");
  const auto& hex = state["torch_cpu"].get_ref<const std::string&>();
  if (hex.size() % 2 != 0) throw FormatError("rng state: odd number of hex digits");
  at::Tensor bytes = at::empty({static_cast<int64_t>(hex.size() / 2)}, at::kByte);
  auto* out = bytes.data_ptr<uint8_t>();
  for (std::size_t i = 0; i < hex.size() / 2; ++i) {
    const int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) throw FormatError("rng state: not a hex string");
    out[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  try {
    gen.set_state(bytes);
  } catch (const c10::Error& e) {
    throw FormatError(std::string("rng state: rejected by torch: ") + e.what_without_backtrace());
  }
}

}  // namespace metalm
