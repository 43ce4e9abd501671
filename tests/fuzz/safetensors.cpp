// Fuzz target: read_safetensors (weights files: checkpoints, Hugging Face
// imports). A file it accepts must survive a write/read round trip bit for
// bit, and converting its floats must not fail.
#include <cstring>

#include "fuzz_util.hpp"
#include "metalm/io/safetensors.hpp"

namespace {

bool same_bytes(const at::Tensor& a, const at::Tensor& b) {
  if (a.scalar_type() != b.scalar_type() || !a.sizes().equals(b.sizes())) return false;
  // Empty tensors may have no storage at all (a null data pointer).
  return a.numel() == 0 ||
         std::memcmp(a.data_ptr(), b.data_ptr(), static_cast<std::size_t>(a.numel()) * a.element_size()) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  const std::string path = fuzz::write_scratch("input.safetensors", fuzz::as_text(data, size));
  fuzz::expect_errors([&] {
    const SafeTensorsFile file = read_safetensors(path);
    const SafeTensorsFile as_float = read_safetensors(path, at::kFloat);
    fuzz::require(as_float.tensors.size() == file.tensors.size(), "float conversion keeps every tensor");

    const std::string copy = fuzz::scratch_dir() + "/copy.safetensors";
    write_safetensors(copy, file.tensors, file.metadata);
    const SafeTensorsFile again = read_safetensors(copy);
    fuzz::require(again.metadata == file.metadata, "metadata survives a round trip");
    fuzz::require(again.tensors.size() == file.tensors.size(), "every tensor survives a round trip");
    for (const auto& [name, tensor] : file.tensors) {
      const auto it = again.tensors.find(name);
      fuzz::require(it != again.tensors.end() && same_bytes(tensor, it->second), "tensor bytes survive a round trip");
    }
  });
  return 0;
}
