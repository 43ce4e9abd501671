#include "metalm/core/version.hpp"

namespace metalm {

const char* version() { return METALM_VERSION; }

}  // namespace metalm
