// Hostile weight files: safetensors headers nested or sized to break the
// parser, shapes whose products overflow, inputs that are not regular files,
// and Hugging Face shard indexes that point outside the model folder.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "metalm/core/error.hpp"
#include "metalm/io/hf_gpt2.hpp"
#include "metalm/io/safetensors.hpp"
#include "support/error_of.hpp"
#include "support/raw_safetensors.hpp"
#include "support/temp_dir.hpp"

namespace metalm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using test::TempDir;

using test::contains;
using test::error_of;
constexpr auto write_raw = test::write_raw_safetensors;

TEST(HostileSafetensors, DeeplyNestedHeaderIsAFormatError) {
  TempDir dir;
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string path = write_raw(dir / "deep.safetensors", "{\"__metadata__\": " + deep + "}", "");
  const std::string msg = error_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, "nested deeper than 256 levels")) << msg.substr(0, 300);
}

TEST(HostileSafetensors, NumberBeyondADoubleNamesTheTensorKey) {
  TempDir dir;
  const std::string path =
      write_raw(dir / "n.safetensors", R"({"w":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})", "abcd");
  const std::string msg = error_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_TRUE(contains(msg, "w.shape[0]: number 1e999 is out of range")) << msg;
}

TEST(HostileSafetensors, EmptyTensorWhoseOtherDimensionsOverflowIsRefused) {
  TempDir dir;
  const std::string path = write_raw(
      dir / "e.safetensors",
      R"({"e":{"dtype":"F32","shape":[0,4611686018427387904,4611686018427387904],"data_offsets":[0,0]}})", "");
  const std::string msg = error_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_TRUE(contains(msg, "'e'") && contains(msg, "64-bit")) << msg;
  // An ordinary empty tensor still reads.
  const std::string ok =
      write_raw(dir / "ok.safetensors", R"({"e":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]}})", "");
  EXPECT_EQ(read_safetensors(ok).tensors.at("e").sizes(), (std::vector<int64_t>{0, 3}));
}

TEST(HostileSafetensors, ShapeWithThousandsOfDimensionsIsRefused) {
  TempDir dir;
  json shape = json::array();
  for (int i = 0; i < 5000; ++i) shape.push_back(1);
  const json header = {{"t", {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {0, 4}}}}};
  const std::string path = write_raw(dir / "dims.safetensors", header.dump(), "abcd");
  const std::string msg = error_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_TRUE(contains(msg, "'t'") && contains(msg, "5000 dimensions")) << msg;
}

TEST(HostileSafetensors, HugeTensorNameIsQuotedShort) {
  TempDir dir;
  const std::string name(400000, 'n');
  const std::string path =
      write_raw(dir / "name.safetensors", "{\"" + name + "\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}",
                std::string(8, '\0'));
  const std::string msg = error_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_TRUE(contains(msg, "unknown dtype")) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 500u);
}

TEST(HostileSafetensors, FifoAndDirectoryAreRefusedWithoutBlocking) {
  TempDir dir;
  ASSERT_EQ(::mkfifo((dir / "fifo.safetensors").c_str(), 0600), 0);
  EXPECT_TRUE(contains(error_of<IoError>([&] { read_safetensors(dir / "fifo.safetensors"); }), "FIFO"));
  EXPECT_TRUE(contains(error_of<IoError>([&] { read_safetensors(dir.path()); }), "a directory"));
}

// ---- Hugging Face directories ------------------------------------------------

json tiny_config() {
  return {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"n_embd", 8}, {"n_head", 2},
          {"n_layer", 1}, {"n_positions", 6}, {"vocab_size", 11}};
}

// A valid sharded GPT-2 directory at `dir` whose index names `shard` for
// every tensor, with the shard's file written at `shard_file`.
void write_sharded(const fs::path& dir, const std::string& shard, const fs::path& shard_file) {
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  std::map<std::string, torch::Tensor> tensors;
  json map = json::object();
  for (const auto& n : gpt2_tensor_names(cfg)) {
    tensors[n.hf] = torch::randn(n.hf_shape);
    map[n.hf] = shard;
  }
  fs::create_directories(dir);
  std::ofstream(dir / "config.json") << tiny_config().dump();
  std::ofstream(dir / "model.safetensors.index.json") << json{{"weight_map", map}}.dump();
  write_safetensors(shard_file.string(), tensors);
}

TEST(HostileHfIndex, ShardPathsAreConfinedToTheModelFolder) {
  TempDir dir;
  const fs::path model = dir / "model";
  const fs::path outside = dir / "outside.safetensors";

  write_sharded(model, "../outside.safetensors", outside);  // a valid file, but outside the folder
  std::string msg = error_of<FormatError>([&] { read_hf_gpt2(model.string()); });
  EXPECT_TRUE(contains(msg, "model.safetensors.index.json: weight_map entry") &&
              contains(msg, "\"../outside.safetensors\"") && contains(msg, "\"..\""))
      << msg;

  write_sharded(model, outside.string(), outside);
  msg = error_of<FormatError>([&] { read_hf_gpt2(model.string()); });
  EXPECT_TRUE(contains(msg, "an absolute path")) << msg;

  fs::create_symlink(outside, model / "link.safetensors");
  write_sharded(model, "link.safetensors", outside);
  msg = error_of<FormatError>([&] { read_hf_gpt2(model.string()); });
  EXPECT_TRUE(contains(msg, "a symlink to") && contains(msg, "outside the model folder")) << msg;

  // Inside the folder (through a subfolder) it reads.
  fs::create_directories(model / "shards");
  write_sharded(model, "shards/a.safetensors", model / "shards" / "a.safetensors");
  EXPECT_EQ(read_hf_gpt2(model.string()).files.size(), 1u);
}

TEST(HostileHfIndex, ShardThatIsAFifoIsRefusedWithoutBlocking) {
  TempDir dir;
  const fs::path model = dir / "model";
  write_sharded(model, "pipe.safetensors", dir / "unused.safetensors");
  ASSERT_EQ(::mkfifo((model / "pipe.safetensors").c_str(), 0600), 0);
  const std::string msg = error_of<IoError>([&] { read_hf_gpt2(model.string()); });
  EXPECT_TRUE(contains(msg, "pipe.safetensors") && contains(msg, "FIFO")) << msg;
}

TEST(HostileHfConfig, NumberBeyondADoubleAndHugeValuesNameTheKeyBriefly) {
  TempDir dir;
  std::ofstream(dir / "config.json") << R"({"model_type": "gpt2", "n_embd": 1e999})";
  const std::string msg = error_of<ConfigError>([&] { read_hf_gpt2(dir.path()); });
  EXPECT_TRUE(contains(msg, "config.json:1:") && contains(msg, "n_embd: number 1e999 is out of range")) << msg;

  // Sizes whose products overflow int64 are refused before any shape is computed.
  json huge = tiny_config();
  huge["n_embd"] = int64_t{1} << 62;
  huge["n_head"] = 1;
  const std::string dims = error_of<ConfigError>([&] { hf_gpt2_model_config(huge, "config.json"); });
  EXPECT_TRUE(contains(dims, "config.json") && contains(dims, "model.d_model = 4611686018427387904")) << dims;

  json c = tiny_config();
  c["n_layer"] = std::string(400000, '4');
  const std::string big = error_of<ConfigError>([&] { hf_gpt2_model_config(c, "config.json"); });
  EXPECT_TRUE(contains(big, "n_layer must be an integer")) << big.substr(0, 300);
  EXPECT_LT(big.size(), 300u);
}

}  // namespace
}  // namespace metalm
