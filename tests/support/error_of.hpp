// The message of the typed error a call throws, for tests of the project's
// one-line errors: error_of<FormatError>([&] { read(path); }) is what() of
// that FormatError, or a marker that no error of that type came (another
// type propagates, so the test fails on it by name).
#pragma once

#include <string>

namespace metalm::test {

template <class E, class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  }
  return "(no error of the expected type)";
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace metalm::test
