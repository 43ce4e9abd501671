#include "metalm/core/file.hpp"

#include <fstream>
#include <sstream>

#include "metalm/core/error.hpp"

namespace metalm {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace metalm
