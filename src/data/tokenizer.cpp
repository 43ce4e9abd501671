#include "metalm/data/tokenizer.hpp"

#include <cstdlib>
#include <filesystem>

#include "metalm/core/error.hpp"
#include "metalm/data/bpe_tokenizer.hpp"
#include "metalm/data/byte_tokenizer.hpp"

namespace metalm {

Tokenizer::~Tokenizer() = default;

std::string default_gpt2_dir() {
  const char* data = std::getenv("METALM_DATA");
  return std::string(data && *data ? data : "data") + "/gpt2";
}

namespace {

std::unique_ptr<Tokenizer> load_bpe_dir(const std::string& dir, const std::string& spec, const char* hint) {
  namespace fs = std::filesystem;
  for (const char* file : {"encoder.json", "vocab.bpe"})
    if (!fs::is_regular_file(fs::path(dir) / file))
      throw IoError("tokenizer '" + spec + "': " + (fs::path(dir) / file).string() + " not found (" + hint + ")");
  return BpeTokenizer::load(dir, spec);
}

}  // namespace

std::unique_ptr<Tokenizer> make_tokenizer(const std::string& spec) {
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  if (spec == "gpt2")
    return load_bpe_dir(default_gpt2_dir(), spec, "run scripts/dev/setup.sh to fetch GPT-2's tokenizer, or set METALM_DATA");
  if (spec.rfind("gpt2:", 0) == 0 && spec.size() > 5)
    return load_bpe_dir(spec.substr(5), spec, "expected GPT-2's encoder.json and vocab.bpe there");
  if (spec.rfind("bpe:", 0) == 0 && spec.size() > 4)
    return load_bpe_dir(spec.substr(4), spec, "train one with `metalm tokenizer-train`");
  throw ConfigError("unknown tokenizer spec '" + spec + "' (expected byte, gpt2, gpt2:DIR or bpe:DIR)");
}

}  // namespace metalm
