// A safetensors file from a raw header and data buffer, the way a hostile or
// broken writer could make one (write_safetensors only writes valid files).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>

namespace metalm::test {

inline std::string write_raw_safetensors(const std::string& path, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out << header << data;
  return path;
}

}  // namespace metalm::test
