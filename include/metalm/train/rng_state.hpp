// The global torch CPU generator's state (it drives dropout) as JSON, so a
// resumed run draws exactly the dropout masks of an uninterrupted one.
#pragma once

#include <nlohmann/json.hpp>

namespace metalm {

// {"torch_cpu": "<hex bytes of at::Generator::get_state()>"}
nlohmann::json capture_rng_state();

// Restores a state written by capture_rng_state; FormatError when malformed.
void restore_rng_state(const nlohmann::json& state);

// Runs `fn` and puts the global generator back as it was (for code that must
// not disturb the caller's random stream, e.g. building a model to load into).
template <class Fn>
auto preserving_rng_state(Fn&& fn) {
  const nlohmann::json saved = capture_rng_state();
  auto result = fn();
  restore_rng_state(saved);
  return result;
}

}  // namespace metalm
