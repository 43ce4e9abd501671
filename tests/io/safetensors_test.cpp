// safetensors reader/writer: exact round trips and clear errors on every kind
// of malformed file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "metalm/core/error.hpp"
#include "metalm/io/safetensors.hpp"
#include "support/error_of.hpp"

namespace metalm {
namespace {

std::string temp_path(const std::string& name) {
  return std::string(METALM_BINARY_DIR) + "/test_safetensors_" + std::to_string(::getpid()) + "_" + name;
}

// Writes a file from a raw header string and a data buffer, the way a buggy
// or hostile writer might.
void write_raw(const std::string& path, const std::string& header, const std::string& data,
               uint64_t claimed_len = UINT64_MAX) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t len = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((len >> (8 * i)) & 0xff));
  out << header << data;
}

std::string error_of(const std::string& path) {
  return test::error_of<FormatError>([&] { read_safetensors(path); });
}

TEST(SafeTensors, RoundTripIsExactForEveryFloatDtype) {
  torch::manual_seed(0);
  std::map<std::string, torch::Tensor> in;
  in["a.f32"] = torch::randn({3, 5});
  in["b.f16"] = torch::randn({7}).to(torch::kHalf);
  in["c.bf16"] = torch::randn({2, 2, 3}).to(torch::kBFloat16);
  in["d.f64"] = torch::randn({4}, torch::kDouble);
  in["e.i64"] = torch::arange(10, torch::kLong);
  in["f.scalar"] = torch::tensor(3.5f);
  in["g.empty"] = torch::empty({0, 4});
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"note", "quote \" and \xc3\xa9"}};
  const std::string path = temp_path("roundtrip.safetensors");
  write_safetensors(path, in, meta);

  const SafeTensorsFile out = read_safetensors(path);
  EXPECT_EQ(out.metadata, meta);
  ASSERT_EQ(out.tensors.size(), in.size());
  for (const auto& [name, t] : in) {
    const auto& u = out.tensors.at(name);
    EXPECT_EQ(u.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(u.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(u, t)) << name;
  }
  std::remove(path.c_str());
}

TEST(SafeTensors, HeaderIsPaddedToEightBytesAndDataFollows) {
  const std::string path = temp_path("pad.safetensors");
  write_safetensors(path, {{"x", torch::ones({3})}});
  std::ifstream in(path, std::ios::binary);
  unsigned char b[8];
  in.read(reinterpret_cast<char*>(b), 8);
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i) len = (len << 8) | b[i];
  EXPECT_EQ((8 + len) % 8, 0u);
  in.seekg(0, std::ios::end);
  EXPECT_EQ(static_cast<uint64_t>(in.tellg()), 8 + len + 12);
  std::remove(path.c_str());
}

TEST(SafeTensors, ConvertsFloatsToFloat32OnRequest) {
  const std::string path = temp_path("convert.safetensors");
  write_safetensors(path, {{"h", torch::tensor({1.5, -2.25}).to(torch::kHalf)}, {"i", torch::arange(3)}});
  const auto f = read_safetensors(path, torch::kFloat);
  EXPECT_EQ(f.tensors.at("h").scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(f.tensors.at("h"), torch::tensor({1.5f, -2.25f})));
  EXPECT_EQ(f.tensors.at("i").scalar_type(), torch::kLong);
  std::remove(path.c_str());
}

TEST(SafeTensors, TruncatedFileIsAFormatError) {
  const std::string path = temp_path("short.safetensors");
  std::ofstream(path, std::ios::binary) << "abc";
  EXPECT_NE(error_of(path).find("truncated"), std::string::npos);

  // Valid header, but the data buffer lost its tail.
  const std::string good = temp_path("good.safetensors");
  write_safetensors(good, {{"w", torch::ones({16})}});
  std::ifstream in(good, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 4);
  const std::string msg = error_of(path);
  EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  std::remove(path.c_str());
  std::remove(good.c_str());
}

TEST(SafeTensors, HeaderLengthBeyondTheFileIsAFormatError) {
  const std::string path = temp_path("hlen.safetensors");
  write_raw(path, "{}", "", /*claimed_len=*/uint64_t{1} << 60);  // would be an exabyte allocation
  EXPECT_NE(error_of(path).find("header length"), std::string::npos);
  std::remove(path.c_str());
}

TEST(SafeTensors, MalformedJsonIsAFormatError) {
  const std::string path = temp_path("json.safetensors");
  write_raw(path, "{\"a\": [", "");
  EXPECT_NE(error_of(path).find("JSON"), std::string::npos);
  std::remove(path.c_str());
}

TEST(SafeTensors, OffsetsOutOfRangeAreAFormatError) {
  const std::string path = temp_path("range.safetensors");
  write_raw(path, R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0'));
  const std::string msg = error_of(path);
  EXPECT_NE(msg.find("'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("beyond"), std::string::npos) << msg;
  std::remove(path.c_str());
}

TEST(SafeTensors, OverlappingOffsetsAreAFormatError) {
  const std::string path = temp_path("overlap.safetensors");
  write_raw(path,
            R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
            R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
            std::string(12, '\0'));
  EXPECT_NE(error_of(path).find("overlapping"), std::string::npos);
  std::remove(path.c_str());
}

TEST(SafeTensors, UnknownDtypeIsAFormatError) {
  const std::string path = temp_path("dtype.safetensors");
  write_raw(path, R"({"z":{"dtype":"C64","shape":[1],"data_offsets":[0,8]}})", std::string(8, '\0'));
  const std::string msg = error_of(path);
  EXPECT_NE(msg.find("unknown dtype 'C64'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'z'"), std::string::npos) << msg;
  std::remove(path.c_str());
}

TEST(SafeTensors, ShapeByteCountMismatchIsAFormatError) {
  const std::string path = temp_path("shape.safetensors");
  write_raw(path, R"({"m":{"dtype":"F16","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0'));
  const std::string msg = error_of(path);
  EXPECT_NE(msg.find("'m'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("6 bytes"), std::string::npos) << msg;
  std::remove(path.c_str());
}

TEST(SafeTensors, HugeShapeIsRejectedWithoutAllocating) {
  const std::string path = temp_path("huge.safetensors");
  write_raw(path,
            R"({"big":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
            std::string(8, '\0'));
  EXPECT_NE(error_of(path).find("'big'"), std::string::npos);
  std::remove(path.c_str());
}

TEST(SafeTensors, MissingFileIsAnIoError) {
  EXPECT_THROW(read_safetensors(temp_path("does_not_exist")), IoError);
}

TEST(SafeTensors, ReservedNameAndUnsupportedDtypeAreRefusedOnWrite) {
  const std::string path = temp_path("bad_write.safetensors");
  EXPECT_THROW(write_safetensors(path, {{"__metadata__", torch::ones({1})}}), FormatError);
  EXPECT_THROW(write_safetensors(path, {{"c", torch::ones({1}, torch::kComplexFloat)}}), FormatError);
  EXPECT_FALSE(std::ifstream(path).good());
}

}  // namespace
}  // namespace metalm
