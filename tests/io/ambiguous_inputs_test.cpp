// Weight files that say two things at once: a safetensors header naming one
// tensor twice, a data buffer with bytes no tensor owns (a gap, or a tail),
// and a Hugging Face shard index that disagrees with its shards. Each is a
// FormatError naming the file and the tensor, not a silent choice.
#include <gtest/gtest.h>

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
using test::contains;
using test::error_of;
using test::write_raw_safetensors;
using test::TempDir;

TEST(AmbiguousSafetensors, ATensorNamedTwiceIsRefusedNamingIt) {
  TempDir dir;
  const std::string path = write_raw_safetensors(dir / "dup.safetensors",
                                                 R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                                                 R"("w":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}})",
                                                 "abcd");
  const std::string msg = error_of<FormatError>([&] { read_safetensors(path); });
  EXPECT_TRUE(contains(msg, path + ": header: duplicate key \"w\"")) << msg;
}

TEST(AmbiguousSafetensors, TrailingBytesAfterTheLastTensorAreRefused) {
  TempDir dir;
  const std::string header = R"({"w":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})";
  EXPECT_NO_THROW(read_safetensors(write_raw_safetensors(dir / "ok.safetensors", header, "ab")));
  const std::string path = write_raw_safetensors(dir / "tail.safetensors", header, "ab-appended");
  EXPECT_EQ(error_of<FormatError>([&] { read_safetensors(path); }),
            path + ": the data buffer holds 11 bytes but its tensors only 2: trailing bytes after the last tensor "
                   "(not one safetensors file)");
  // A file without tensors holds no data either.
  const std::string empty = write_raw_safetensors(dir / "empty.safetensors", "{}", "x");
  const std::string msg = error_of<FormatError>([&] { read_safetensors(empty); });
  EXPECT_TRUE(contains(msg, "holds 1 bytes but its tensors only 0")) << msg;
}

TEST(AmbiguousSafetensors, BytesBetweenTensorsAreRefusedNamingTheNextTensor) {
  TempDir dir;
  const std::string path = write_raw_safetensors(dir / "gap.safetensors",
                                                 R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                                 R"("b":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})",
                                                 "a..b");
  EXPECT_EQ(error_of<FormatError>([&] { read_safetensors(path); }),
            path + ": bytes [1, 3) of the data buffer belong to no tensor (before 'b')");
}

TEST(AmbiguousSafetensors, WhatMetalmWritesReadsBack) {
  TempDir dir;
  const std::string path = dir / "w.safetensors";
  write_safetensors(path, {{"a", torch::ones({3})}, {"b", torch::zeros({0})}, {"c", torch::ones({2, 2}, torch::kInt)}});
  EXPECT_EQ(read_safetensors(path).tensors.size(), 3u);
}

json tiny_config() {
  return {{"architectures", {"GPT2LMHeadModel"}}, {"model_type", "gpt2"}, {"n_embd", 8}, {"n_head", 2},
          {"n_layer", 1}, {"n_positions", 6}, {"vocab_size", 11}};
}

// A valid GPT-2 directory in two shards, a.safetensors (the embeddings) and
// b.safetensors (the rest); edit(index) may change the index before it is written.
template <class Edit>
fs::path two_shards(const TempDir& dir, Edit edit) {
  const fs::path model = dir / "model";
  fs::create_directories(model);
  const ModelConfig cfg = hf_gpt2_model_config(tiny_config(), "c");
  std::map<std::string, torch::Tensor> a, b;
  json map = json::object();
  for (const auto& n : gpt2_tensor_names(cfg)) {
    const bool first = n.hf.rfind("wte", 0) == 0 || n.hf.rfind("wpe", 0) == 0;
    (first ? a : b)[n.hf] = torch::randn(n.hf_shape);
    map[n.hf] = first ? "a.safetensors" : "b.safetensors";
  }
  write_safetensors((model / "a.safetensors").string(), a);
  write_safetensors((model / "b.safetensors").string(), b);
  edit(map);
  std::ofstream(model / "config.json") << tiny_config().dump();
  std::ofstream(model / "model.safetensors.index.json") << json{{"weight_map", map}}.dump();
  return model;
}

TEST(AmbiguousHfIndex, AConsistentIndexReads) {
  TempDir dir;
  const fs::path model = two_shards(dir, [](json&) {});
  EXPECT_EQ(read_hf_gpt2(model.string()).files.size(), 2u);
}

TEST(AmbiguousHfIndex, ATensorInAnotherShardThanTheIndexSaysIsRefused) {
  TempDir dir;
  const fs::path model = two_shards(dir, [](json& map) { map["wte.weight"] = "b.safetensors"; });
  const std::string msg = error_of<FormatError>([&] { read_hf_gpt2(model.string()); });
  EXPECT_TRUE(contains(msg, "a.safetensors: holds tensor 'wte.weight', which ") &&
              contains(msg, "model.safetensors.index.json places in ") && contains(msg, "b.safetensors"))
      << msg;
}

TEST(AmbiguousHfIndex, AnIndexEntryItsShardDoesNotHoldIsRefused) {
  TempDir dir;
  const fs::path model = two_shards(dir, [](json& map) { map["h.0.ghost.weight"] = "a.safetensors"; });
  const std::string msg = error_of<FormatError>([&] { read_hf_gpt2(model.string()); });
  EXPECT_TRUE(contains(msg, "model.safetensors.index.json: weight_map places tensor 'h.0.ghost.weight' in ") &&
              contains(msg, "a.safetensors, which does not hold it"))
      << msg;
}

TEST(AmbiguousHfIndex, AShardTensorTheIndexDoesNotListIsRefused) {
  TempDir dir;
  const fs::path model = two_shards(dir, [](json& map) { map.erase("wpe.weight"); });
  const std::string msg = error_of<FormatError>([&] { read_hf_gpt2(model.string()); });
  EXPECT_TRUE(contains(msg, "a.safetensors: holds tensor 'wpe.weight', which ") && contains(msg, "does not list"))
      << msg;
}

}  // namespace
}  // namespace metalm
