// Typed errors thrown by the library. Library code never exits: the CLI turns
// these into a one-line message and an exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace metalm {

// Base of every error the library throws on purpose.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A configuration is malformed, has an unknown key, a wrong type or an
// impossible value. The CLI maps it to exit code 2, like a usage error.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A file is missing, unreadable or unwritable.
class IoError : public Error {
 public:
  using Error::Error;
};

// A file exists but its content is not what was expected (bad magic, version,
// truncated, corrupt header, invalid UTF-8...).
class FormatError : public Error {
 public:
  using Error::Error;
};

// Tensor shapes or sizes that cannot work together.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// A non-finite loss or gradient, or another numerical failure.
class NumericError : public Error {
 public:
  using Error::Error;
};

}  // namespace metalm
