// Hostile JSON: nesting deep enough to overflow a recursive dump, numbers
// beyond a double, values large enough to flood stderr, and paths that are
// not files. Each is a one-line ConfigError (or FormatError for data files)
// naming the file and, where there is one, the key.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/threads.hpp"
#include "support/error_of.hpp"

namespace metalm {
namespace {

namespace fs = std::filesystem;

class HostileJson : public ::testing::Test {
 protected:
  fs::path dir = fs::path(METALM_BINARY_DIR) / "test_tmp" / "config" /
                 ::testing::UnitTest::GetInstance()->current_test_info()->name();
  void SetUp() override {
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir / name;
    std::ofstream(p, std::ios::binary) << text;
    return p.string();
  }
};

using test::contains;
using test::error_of;

std::string nested(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

TEST_F(HostileJson, NumberBeyondADoubleIsAConfigErrorNamingFileLineAndKey) {
  const std::string path = write("lr.json", "{\"train\": {\n  \"steps\": 3,\n  \"lr\": 1e999}}");
  const std::string msg = error_of<ConfigError>([&] { load_run_config(path); });
  EXPECT_TRUE(contains(msg, path + ":3:9: ")) << msg;  // the number's first character
  EXPECT_TRUE(contains(msg, "train.lr: number 1e999 is out of range")) << msg;
  const std::string in_list = error_of<ConfigError>([&] {
    load_run_config(write("steps.json", R"({"train": {"save_steps": [0, 5, -1e400]}})"));
  });
  EXPECT_TRUE(contains(in_list, "train.save_steps[2]: number -1e400 is out of range")) << in_list;
}

TEST_F(HostileJson, NestingIsCappedAt256Levels) {
  EXPECT_NO_THROW(parse_json(nested(kMaxJsonDepth), "ok"));
  const std::string msg = error_of<ConfigError>([&] { parse_json(nested(kMaxJsonDepth + 1), "deep"); });
  EXPECT_TRUE(contains(msg, "deep: JSON nested deeper than 256 levels")) << msg;
}

TEST_F(HostileJson, ConfigNested100000DeepIsAnErrorNotAStackOverflow) {
  const std::string path = write("deep.json", "{\"model\": " + nested(100000) + "}");
  const std::string msg = error_of<ConfigError>([&] { load_run_config(path); });
  EXPECT_TRUE(contains(msg, path) && contains(msg, "nested deeper than 256 levels")) << msg;
  EXPECT_LT(msg.size(), 300u);
}

TEST_F(HostileJson, OverrideListNested100000DeepIsAnErrorNotAStackOverflow) {
  RunConfig c;
  const std::string msg = error_of<ConfigError>([&] { apply_override(c, "train.save_steps=" + nested(100000)); });
  EXPECT_TRUE(contains(msg, "train.save_steps")) << msg;
  EXPECT_LT(msg.size(), 300u);
}

TEST_F(HostileJson, WrongTypeQuotesAtMostAboutEightyCharactersOfTheValue) {
  const std::string huge(400000, 'x');
  for (const std::string& text : {"{\"model\": {\"n_layer\": \"" + huge + "\"}}",       // int key
                                  "{\"model\": {\"norm\": \"" + huge + "\"}}",          // enum key
                                  "{\"model\": {\"" + huge + "\": 1}}",                 // unknown key
                                  "{\"train\": {\"save_steps\": [\"" + huge + "\"]}}"}) {  // list element
    const std::string msg = error_of<ConfigError>([&] { load_run_config(write("big.json", text)); });
    EXPECT_TRUE(contains(msg, "(400")) << msg.substr(0, 300);  // the cut says how long the value was
    EXPECT_LT(msg.size(), 400u) << msg.substr(0, 300);
  }
  RunConfig c;
  const std::string set = error_of<ConfigError>([&] { apply_override(c, "model.n_layer=" + huge); });
  EXPECT_LT(set.size(), 300u) << set.substr(0, 300);
}

TEST_F(HostileJson, MalformedJsonQuotesLittleOfAnUnterminatedString) {
  const std::string path = write("open.json", "{\"name\": \"" + std::string(400000, 'y'));
  const std::string msg = error_of<ConfigError>([&] { load_run_config(path); });
  EXPECT_TRUE(contains(msg, path + ":1:") && contains(msg, "malformed JSON")) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 400u);
}

TEST_F(HostileJson, DataFilesGetFormatErrors) {
  EXPECT_THROW(parse_json("{\"a\": 1e999}", "meta.json", JsonError::Format), FormatError);
  EXPECT_THROW(parse_json(nested(300), "meta.json", JsonError::Format), FormatError);
  EXPECT_THROW(parse_json("{", "meta.json", JsonError::Format), FormatError);
}

TEST_F(HostileJson, DataJsonIsReadFromRegularFilesOnlyAndNothingBlocks) {
  const std::string fifo = (dir / "fifo.json").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_TRUE(contains(error_of<IoError>([&] { read_json_file(fifo, JsonError::Format); }), "FIFO"));
  // A config may be a pipe; one that nobody writes to reads as empty, at once.
  EXPECT_TRUE(contains(error_of<ConfigError>([&] { read_json_file(fifo); }), "malformed JSON"));
  EXPECT_TRUE(contains(error_of<IoError>([&] { read_json_file(dir.string()); }), "a directory, not a regular file"));
}

TEST_F(HostileJson, ModelSizesWhoseProductsCouldOverflowAreConfigErrors) {
  // d_model = 2^62 made resolve() compute d_mlp = 4 * d_model in overflow.
  const std::string d = error_of<ConfigError>([&] { load_run_config("", {"model.d_model=4611686018427387904"}); });
  EXPECT_TRUE(contains(d, "model.d_model = 4611686018427387904: must be from 1 to 16777216")) << d;
  const std::string v = error_of<ConfigError>([&] { load_run_config("", {"model.vocab_size=4294967297"}); });
  EXPECT_TRUE(contains(v, "model.vocab_size = 4294967297: must be from 1 to 4294967296")) << v;
  const std::string m = error_of<ConfigError>([&] { load_run_config("", {"model.d_mlp=-1"}); });
  EXPECT_TRUE(contains(m, "model.d_mlp = -1")) << m;
  EXPECT_EQ(load_run_config("", {"model.d_model=16", "model.n_head=2"}).model.d_mlp, 64);
}

TEST_F(HostileJson, ThreadsAboveTheCeilingNameTheKey) {
  const std::string msg = error_of<ConfigError>([&] { load_run_config("", {"train.threads=100000"}); });
  EXPECT_TRUE(contains(msg, "train.threads = 100000") && contains(msg, std::to_string(kMaxThreads))) << msg;
  EXPECT_EQ(load_run_config("", {"train.threads=256"}).train.threads, 256);
}

}  // namespace
}  // namespace metalm
