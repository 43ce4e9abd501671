#include "metalm/data/token_file.hpp"

#include <cstring>

#include "metalm/core/atomic_file.hpp"
#include "metalm/core/error.hpp"

namespace metalm {
namespace {

void put_le(unsigned char* p, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}

uint64_t get_le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

const char* kHowToMake = " (token files are written by `metalm prepare`)";

}  // namespace

uint32_t id_bytes_for_vocab(int64_t vocab_size) { return vocab_size <= 65536 ? 2 : 4; }

TokenFileHeader parse_token_file_header(const unsigned char* bytes, std::size_t file_size, const std::string& path) {
  if (file_size < TokenFileHeader::kBytes)
    throw FormatError(path + ": truncated: " + std::to_string(file_size) + " bytes, shorter than the " +
                      std::to_string(TokenFileHeader::kBytes) + "-byte header" + kHowToMake);
  if (std::memcmp(bytes, TokenFileHeader::kMagic, 8) != 0)
    throw FormatError(path + ": not a metalm token file (expected magic \"MLMTOKEN\")" + kHowToMake);
  TokenFileHeader h;
  h.version = static_cast<uint32_t>(get_le(bytes + 8, 4));
  h.id_bytes = static_cast<uint32_t>(get_le(bytes + 12, 4));
  h.vocab_size = static_cast<int64_t>(get_le(bytes + 16, 8));
  h.count = static_cast<int64_t>(get_le(bytes + 24, 8));
  if (h.version != TokenFileHeader::kVersion)
    throw FormatError(path + ": token file version " + std::to_string(h.version) + ", this metalm reads version " +
                      std::to_string(TokenFileHeader::kVersion) + "; re-run `metalm prepare`");
  if (h.id_bytes != 2 && h.id_bytes != 4)
    throw FormatError(path + ": id width " + std::to_string(h.id_bytes) + " bytes, expected 2 (uint16) or 4 (uint32)");
  if (h.vocab_size <= 0 || h.vocab_size > (int64_t{1} << 32))
    throw FormatError(path + ": vocab size " + std::to_string(h.vocab_size) + " out of range");
  if (h.id_bytes == 2 && h.vocab_size > 65536)
    throw FormatError(path + ": uint16 ids cannot hold a vocabulary of " + std::to_string(h.vocab_size) +
                      " (expected uint32 ids)");
  if (h.count < 0) throw FormatError(path + ": negative token count");
  // Compare counts, not byte sizes: 32 + count * id_bytes can overflow for a
  // corrupt count and then match a small file.
  const uint64_t payload = file_size - TokenFileHeader::kBytes;
  const uint64_t count = static_cast<uint64_t>(h.count);
  if (payload % h.id_bytes != 0 || payload / h.id_bytes != count) {
    const bool truncated = count > payload / h.id_bytes;
    throw FormatError(path + ": " + (truncated ? "truncated" : "trailing bytes") + ": header says " +
                      std::to_string(count) + " ids of " + std::to_string(h.id_bytes) + " bytes, file has " +
                      std::to_string(file_size) + " bytes (room for " + std::to_string(payload / h.id_bytes) +
                      " ids)" + (truncated ? kHowToMake : ""));
  }
  return h;
}

TokenFileWriter::TokenFileWriter(const std::string& path, int64_t vocab_size)
    : path_(path), file_(std::make_unique<AtomicFile>(path)) {
  header_.vocab_size = vocab_size;
  header_.id_bytes = id_bytes_for_vocab(vocab_size);
  const unsigned char zeros[TokenFileHeader::kBytes] = {};
  file_->write(zeros, sizeof zeros);
}

TokenFileWriter::~TokenFileWriter() = default;

void TokenFileWriter::append(const std::vector<int64_t>& ids) {
  const int w = static_cast<int>(header_.id_bytes);
  buffer_.resize(ids.size() * w);
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= header_.vocab_size)
      throw FormatError(path_ + ": token id " + std::to_string(ids[i]) + " outside the vocabulary of " +
                        std::to_string(header_.vocab_size));
    put_le(buffer_.data() + i * w, static_cast<uint64_t>(ids[i]), w);
  }
  file_->write(buffer_.data(), buffer_.size());
  header_.count += static_cast<int64_t>(ids.size());
}

void TokenFileWriter::finish() {
  unsigned char h[TokenFileHeader::kBytes] = {};
  std::memcpy(h, TokenFileHeader::kMagic, 8);
  put_le(h + 8, header_.version, 4);
  put_le(h + 12, header_.id_bytes, 4);
  put_le(h + 16, static_cast<uint64_t>(header_.vocab_size), 8);
  put_le(h + 24, static_cast<uint64_t>(header_.count), 8);
  file_->write_at(0, h, sizeof h);
  file_->commit();
}

}  // namespace metalm
