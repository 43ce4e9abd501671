#include "metalm/io/safetensors.hpp"

#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <limits>
#include <vector>

#include "metalm/core/atomic_file.hpp"
#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors I/O assumes a little-endian host"
#endif

namespace metalm {
namespace {

using nlohmann::json;

// The reference implementation refuses headers above 100 MB; so do we, which
// also bounds what a corrupt length can make us allocate.
constexpr uint64_t kMaxHeaderBytes = 100ull * 1024 * 1024;
// Tensors of real models have at most a handful of dimensions.
constexpr std::size_t kMaxDims = 16;

struct DtypeInfo {
  const char* name;
  c10::ScalarType type;
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble}, {"F32", at::kFloat}, {"F16", at::kHalf},  {"BF16", at::kBFloat16},
    {"I64", at::kLong},   {"I32", at::kInt},   {"I16", at::kShort}, {"I8", at::kChar},
    {"U8", at::kByte},    {"BOOL", at::kBool},
};

[[noreturn]] void format_error(const std::string& path, const std::string& what) {
  throw FormatError(path + ": " + what);
}

struct Entry {
  std::string name;
  c10::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

// Parses and checks one header entry against the data buffer's size, before
// anything is allocated for it.
Entry parse_entry(const std::string& path, const std::string& name, const json& j, uint64_t data_bytes) {
  const std::string where = "tensor '" + excerpt(name) + "'";
  if (!j.is_object()) format_error(path, where + ": header entry is not an object");
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!j.contains(key)) format_error(path, where + ": header entry has no \"" + key + "\"");

  Entry e;
  e.name = name;
  const json& dt = j.at("dtype");
  if (!dt.is_string()) format_error(path, where + ": \"dtype\" is not a string");
  const std::string dname = dt.get<std::string>();
  const DtypeInfo* info = nullptr;
  for (const auto& d : kDtypes)
    if (dname == d.name) info = &d;
  if (info == nullptr)
    format_error(path, where + ": unknown dtype '" + excerpt(dname) +
                           "' (expected F64, F32, F16, BF16, I64, I32, I16, I8, U8 or BOOL)");
  e.dtype = info->type;

  const json& off = j.at("data_offsets");
  if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
    format_error(path, where + ": \"data_offsets\" must be two non-negative integers");
  e.begin = off[0].get<uint64_t>();
  e.end = off[1].get<uint64_t>();
  if (e.begin > e.end) format_error(path, where + ": data_offsets begin > end");
  if (e.end > data_bytes)
    format_error(path, where + ": data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                           "] beyond the data buffer (" + std::to_string(data_bytes) + " bytes; truncated file?)");
  const json& sh = j.at("shape");
  if (!sh.is_array()) format_error(path, where + ": \"shape\" is not an array");
  if (sh.size() > kMaxDims)
    format_error(path, where + ": shape has " + std::to_string(sh.size()) + " dimensions, at most " +
                           std::to_string(kMaxDims) + " are read");
  for (const json& d : sh) {
    if (!d.is_number_unsigned()) format_error(path, where + ": shape entries must be non-negative integers");
    const uint64_t n = d.get<uint64_t>();
    if (n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      format_error(path, where + ": shape entry too large");
    e.shape.push_back(static_cast<int64_t>(n));
  }
  // numel * itemsize is checked against the buffer as it grows, so a huge
  // shape can neither overflow nor make us allocate. An empty tensor's other
  // dimensions must still multiply within int64 (torch computes its strides).
  const bool empty = std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end();
  const uint64_t limit = empty ? static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) : data_bytes;
  uint64_t bytes = c10::elementSize(e.dtype);
  for (int64_t n : e.shape) {
    if (n == 0) continue;
    if (bytes > limit / static_cast<uint64_t>(n))
      format_error(path, where + ": shape needs more bytes than " +
                             (empty ? std::string("a 64-bit size holds") :
                                      "the data buffer holds (" + std::to_string(data_bytes) + ")"));
    bytes *= static_cast<uint64_t>(n);
  }
  if (empty) bytes = 0;

  if (e.end - e.begin != bytes)
    format_error(path, where + ": shape and dtype need " + std::to_string(bytes) + " bytes but data_offsets span " +
                           std::to_string(e.end - e.begin));
  return e;
}

}  // namespace

std::string safetensors_dtype_name(c10::ScalarType dtype) {
  for (const auto& d : kDtypes)
    if (d.type == dtype) return d.name;
  throw FormatError(std::string("safetensors cannot store dtype ") + c10::toString(dtype));
}

SafeTensorsFile read_safetensors(const std::string& path, c10::optional<c10::ScalarType> float_dtype) {
  const InputFile in(path);
  const uint64_t file_size = in.size();
  if (file_size < 8)
    format_error(path, "truncated: " + std::to_string(file_size) +
                           " bytes, a safetensors file starts with an 8-byte header length");

  unsigned char len_bytes[8];
  in.read_at(0, len_bytes, 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > file_size - 8)
    format_error(path, "header length " + std::to_string(header_len) + " exceeds the file (" +
                           std::to_string(file_size) + " bytes): truncated or not a safetensors file");
  if (header_len > kMaxHeaderBytes)
    format_error(path, "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");

  std::string header(header_len, '\0');
  in.read_at(8, header.data(), header.size());
  const json j = parse_json(header, path + ": header", JsonError::Format);
  if (!j.is_object()) format_error(path, "header is not a JSON object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_bytes = file_size - data_start;
  SafeTensorsFile out;
  std::vector<Entry> entries;
  for (const auto& [name, value] : j.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) format_error(path, "\"__metadata__\" is not an object");
      for (const auto& [k, v] : value.items()) {
        if (!v.is_string()) format_error(path, "\"__metadata__\" value of '" + excerpt(k) + "' is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, name, value, data_bytes));
  }

  // Ranges must not overlap (a writer bug or a crafted file would otherwise
  // alias tensors).
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      format_error(path, "tensors '" + excerpt(by_offset[i - 1]->name) + "' and '" + excerpt(by_offset[i]->name) +
                             "' have overlapping data_offsets");
  // Every byte of the data buffer belongs to one tensor, as the format says:
  // bytes of no tensor (a gap, or a tail after the last tensor, e.g. a file
  // appended to another) would be data that nothing names.
  uint64_t covered = 0;
  for (const Entry* e : by_offset) {
    if (e->begin != covered)
      format_error(path, "bytes [" + std::to_string(covered) + ", " + std::to_string(e->begin) +
                             ") of the data buffer belong to no tensor (before '" + excerpt(e->name) + "')");
    covered = e->end;
  }
  if (covered != data_bytes)
    format_error(path, "the data buffer holds " + std::to_string(data_bytes) + " bytes but its tensors only " +
                           std::to_string(covered) +
                           ": trailing bytes after the last tensor (not one safetensors file)");

  for (const auto& e : entries) {
    at::Tensor t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    const uint64_t n = e.end - e.begin;
    if (n > 0) in.read_at(data_start + e.begin, t.data_ptr(), static_cast<std::size_t>(n));
    if (float_dtype && at::isFloatingType(e.dtype) && e.dtype != *float_dtype) t = t.to(*float_dtype);
    out.tensors.emplace(e.name, std::move(t));
  }
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  std::vector<at::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (name == "__metadata__") throw FormatError(path + ": '__metadata__' is reserved, not a tensor name");
    if (!tensor.defined()) throw FormatError(path + ": tensor '" + name + "' is undefined");
    std::string dname;
    try {
      dname = safetensors_dtype_name(tensor.scalar_type());
    } catch (const FormatError& e) {
      throw FormatError(path + ": tensor '" + name + "': " + e.what());
    }
    at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
    const uint64_t n = static_cast<uint64_t>(t.numel()) * t.element_size();
    header[name] = {{"dtype", dname}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
    data.push_back(std::move(t));
  }
  std::string text = header.dump();
  // Pad with spaces so the data buffer starts 8-byte aligned (the reference
  // writer does the same; readers may then map tensors in place).
  text.append((8 - (8 + text.size()) % 8) % 8, ' ');

  AtomicFile out(path);
  unsigned char len_bytes[8];
  const uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>((len >> (8 * i)) & 0xff);
  out.write(len_bytes, 8);
  out.write(text.data(), text.size());
  for (const auto& t : data) out.write(t.data_ptr(), static_cast<std::size_t>(t.numel() * t.element_size()));
  out.commit();
}

}  // namespace metalm
