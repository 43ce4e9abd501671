#include "metalm/core/version.hpp"

namespace metalm {

const char* version() { return "0.1.0"; }

}  // namespace metalm
