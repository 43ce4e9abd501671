// The token dataset file (train.bin / val.bin): a 32-byte little-endian
// header, then the ids.
//   offset 0   8 bytes  magic "MLMTOKEN"
//   offset 8   uint32   version (1)
//   offset 12  uint32   bytes per id: 2 (uint16, vocab <= 65536) or 4 (uint32)
//   offset 16  uint64   vocab size
//   offset 24  uint64   token count
//   offset 32  ids
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace metalm {

struct TokenFileHeader {
  static constexpr char kMagic[9] = "MLMTOKEN";
  static constexpr uint32_t kVersion = 1;
  static constexpr std::size_t kBytes = 32;

  uint32_t version = kVersion;
  uint32_t id_bytes = 2;
  int64_t vocab_size = 0;
  int64_t count = 0;
};

// Smallest id width that holds every id of a vocabulary.
uint32_t id_bytes_for_vocab(int64_t vocab_size);

// Parses and validates a header read from `path` whose size is `file_size`:
// magic, version, id width (and that it holds the vocabulary) and that the
// file holds exactly `count` ids. Throws FormatError saying what was expected.
TokenFileHeader parse_token_file_header(const unsigned char* bytes, std::size_t file_size, const std::string& path);

class AtomicFile;

// Streams ids into a token file; the header's count is written on finish(),
// which also moves the file into place (AtomicFile, core/atomic_file.hpp).
// Destroyed before finish(), it leaves nothing at `path`.
class TokenFileWriter {
 public:
  TokenFileWriter(const std::string& path, int64_t vocab_size);
  ~TokenFileWriter();
  TokenFileWriter(const TokenFileWriter&) = delete;
  TokenFileWriter& operator=(const TokenFileWriter&) = delete;

  // Throws FormatError on an id outside [0, vocab_size).
  void append(const std::vector<int64_t>& ids);
  void finish();
  int64_t count() const { return header_.count; }

 private:
  std::string path_;
  std::unique_ptr<AtomicFile> file_;
  TokenFileHeader header_;
  std::vector<unsigned char> buffer_;
};

}  // namespace metalm
