// safetensors: the weights format of Hugging Face, and metalm's own.
//
// Layout (little endian): an unsigned 64-bit header length N, N bytes of JSON,
// then the data buffer. The JSON maps each tensor name to
//   {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
// with offsets relative to the start of the data buffer, and may carry
// "__metadata__": a string -> string map.
//
// Supported dtypes: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL.
// Reading validates everything before allocating: a truncated file, a header
// length beyond the file, malformed JSON, a tensor named twice, an unknown
// dtype, offsets out of range or overlapping, bytes of the data buffer that
// belong to no tensor (a gap, trailing bytes), or a shape that disagrees with
// the byte count each throw FormatError naming the file and the tensor.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>

namespace metalm {

struct SafeTensorsFile {
  std::map<std::string, torch::Tensor> tensors;  // CPU, contiguous
  std::map<std::string, std::string> metadata;   // "__metadata__", empty if absent
};

// Reads every tensor. Tensors keep their stored dtype unless `float_dtype` is
// given, in which case floating-point tensors (F64/F32/F16/BF16) are converted
// to it (integer and bool tensors are left alone).
// Throws IoError (unreadable file) or FormatError (invalid content).
SafeTensorsFile read_safetensors(const std::string& path,
                                 c10::optional<c10::ScalarType> float_dtype = c10::nullopt);

// Writes the tensors (moved to CPU, made contiguous) in name order, with the
// header padded to a multiple of 8 bytes as the reference implementation does.
// Written atomically and durably (AtomicFile, core/atomic_file.hpp), so a
// reader never sees a partial file. Throws IoError, or FormatError for a dtype the
// format cannot hold or the reserved name "__metadata__".
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// "F32" <-> at::kFloat, ... Throws FormatError for an unsupported dtype.
std::string safetensors_dtype_name(c10::ScalarType dtype);

}  // namespace metalm
