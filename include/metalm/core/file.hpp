// Whole-file reads with the library's error for a missing or unreadable file.
#pragma once

#include <string>

namespace metalm {

// The bytes of the file at `path`; throws IoError("cannot read PATH").
std::string read_file(const std::string& path);

}  // namespace metalm
