#pragma once

namespace metalm {

// The library version, as in the CMake project.
const char* version();

}  // namespace metalm
