// Internal: generic traversal of the config structs' `fields` lists and the
// enum name tables. Shared by config.cpp and json.cpp.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "metalm/config/config.hpp"
#include "metalm/core/error.hpp"

namespace metalm::detail {

template <class E>
struct EnumTable;

#define METALM_ENUM_TABLE(E, ...)                                               \
  template <>                                                                   \
  struct EnumTable<E> {                                                         \
    static const std::vector<std::pair<E, const char*>>& names() {              \
      static const std::vector<std::pair<E, const char*>> table{__VA_ARGS__};   \
      return table;                                                             \
    }                                                                           \
  };

METALM_ENUM_TABLE(NormKind, {NormKind::LayerNorm, "layernorm"}, {NormKind::RmsNorm, "rmsnorm"},
                  {NormKind::None, "none"})
METALM_ENUM_TABLE(NormPosition, {NormPosition::Pre, "pre"}, {NormPosition::Post, "post"})
METALM_ENUM_TABLE(PositionKind, {PositionKind::Learned, "learned"},
                  {PositionKind::Sinusoidal, "sinusoidal"}, {PositionKind::Rope, "rope"},
                  {PositionKind::None, "none"})
METALM_ENUM_TABLE(AttentionKind, {AttentionKind::Softmax, "softmax"},
                  {AttentionKind::Linear, "linear"})
METALM_ENUM_TABLE(MlpKind, {MlpKind::Gelu, "gelu"}, {MlpKind::GeluTanh, "gelu_tanh"},
                  {MlpKind::Relu, "relu"}, {MlpKind::None, "none"})
METALM_ENUM_TABLE(LrSchedule, {LrSchedule::Cosine, "cosine"}, {LrSchedule::Constant, "constant"})
METALM_ENUM_TABLE(Granularity, {Granularity::Block, "block"}, {Granularity::Sublayer, "sublayer"})
METALM_ENUM_TABLE(Precision, {Precision::Fp32, "fp32"}, {Precision::Bf16, "bf16"}, {Precision::Auto, "auto"})
METALM_ENUM_TABLE(DeviceKind, {DeviceKind::Auto, "auto"}, {DeviceKind::Cpu, "cpu"}, {DeviceKind::Cuda, "cuda"})
#undef METALM_ENUM_TABLE

template <class E>
std::string enum_choices() {
  std::string out;
  for (const auto& [value, name] : EnumTable<E>::names()) {
    if (!out.empty()) out += " | ";
    out += name;
  }
  return out;
}

template <class E>
std::string enum_name(E v) {
  for (const auto& [value, name] : EnumTable<E>::names())
    if (value == v) return name;
  return "?";
}

template <class E>
E enum_parse(const std::string& s, const std::string& path) {
  for (const auto& [value, name] : EnumTable<E>::names())
    if (s == name) return value;
  throw ConfigError(path + ": unknown value \"" + s + "\" (expected " + enum_choices<E>() + ")");
}

// Detects config sections: structs with a static `fields` visitor.
struct FieldProbe {
  template <class X>
  void operator()(const char*, X&, const char*) const {}
};
template <class T, class = void>
struct is_section : std::false_type {};
template <class T>
struct is_section<T, std::void_t<decltype(T::fields(std::declval<T&>(), std::declval<FieldProbe&>()))>>
    : std::true_type {};

template <class T, class = void>
struct is_enum_table : std::false_type {};
template <class T>
struct is_enum_table<T, std::void_t<decltype(EnumTable<T>::names())>> : std::true_type {};

}  // namespace metalm::detail
