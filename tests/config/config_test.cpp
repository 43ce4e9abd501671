#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "support/error_of.hpp"

namespace fs = std::filesystem;
using metalm::ConfigError;
using metalm::RunConfig;
using metalm::test::error_of;

namespace {

class ConfigFiles : public ::testing::Test {
 protected:
  fs::path dir = fs::temp_directory_path() / ("metalm_config_test_" + std::to_string(::getpid()));
  void SetUp() override { fs::create_directories(dir); }
  void TearDown() override { fs::remove_all(dir); }

  std::string write(const std::string& name, const std::string& text) {
    const fs::path p = dir / name;
    std::ofstream(p) << text;
    return p.string();
  }
};

}  // namespace

TEST_F(ConfigFiles, DumpedConfigLoadsBackEqual) {
  RunConfig c = metalm::load_run_config(write("a.json", R"({"model": {"n_layer": 3, "norm": "rmsnorm"},
      "train": {"save_steps": [0, 20], "lr": 0.002}, "analysis": {"granularity": "sublayer"}})"));
  const std::string dumped = write("b.json", metalm::to_json(c).dump(2));
  const RunConfig again = metalm::load_run_config(dumped);
  EXPECT_EQ(metalm::to_json(c), metalm::to_json(again));
  EXPECT_EQ(again.model.n_layer, 3);
  EXPECT_EQ(again.model.norm, metalm::NormKind::RmsNorm);
  EXPECT_EQ(again.train.save_steps, (std::vector<int64_t>{0, 20}));
  EXPECT_EQ(again.analysis.granularity, metalm::Granularity::Sublayer);
}

TEST_F(ConfigFiles, ResolveFillsDerivedDefaults) {
  const RunConfig c = metalm::load_run_config(write("a.json", R"({"model": {"d_model": 96, "n_head": 3, "context": 32}})"));
  EXPECT_EQ(c.model.d_mlp, 4 * 96);
  EXPECT_EQ(c.train.seq_len, 32);
}

TEST_F(ConfigFiles, MalformedJsonNamesFileLineAndColumn) {
  const std::string path = write("bad.json", "{\n  \"model\": {\n    \"n_layer\": 4,,\n  }\n}\n");
  const std::string msg = error_of<ConfigError>([&] { metalm::load_run_config(path); });
  EXPECT_NE(msg.find(path + ":3:18"), std::string::npos) << msg;
  EXPECT_NE(msg.find("malformed JSON"), std::string::npos) << msg;
}

TEST_F(ConfigFiles, UnknownKeyNamesFullPathAndSuggestion) {
  const std::string path = write("a.json", R"({"train": {"learning_rat": 0.1, "lr": 0.1}})");
  const std::string msg = error_of<ConfigError>([&] { metalm::load_run_config(path); });
  EXPECT_NE(msg.find("unknown key \"train.learning_rat\""), std::string::npos) << msg;
  const std::string close = error_of<ConfigError>([&] { metalm::load_run_config(write("b.json", R"({"model": {"n_layers": 2}})")); });
  EXPECT_NE(close.find("did you mean \"model.n_layer\""), std::string::npos) << close;
}

TEST_F(ConfigFiles, UnknownSectionIsAnError) {
  const std::string msg = error_of<ConfigError>([&] { metalm::load_run_config(write("a.json", R"({"modle": {}})")); });
  EXPECT_NE(msg.find("unknown key \"modle\" (did you mean \"model\"?)"), std::string::npos) << msg;
}

TEST_F(ConfigFiles, WrongTypeNamesKeyExpectedAndFound) {
  const std::string msg = error_of<ConfigError>([&] { metalm::load_run_config(write("a.json", R"({"model": {"n_layer": "four"}})")); });
  EXPECT_NE(msg.find("model.n_layer: expected int, found string"), std::string::npos) << msg;
  const std::string b = error_of<ConfigError>([&] { metalm::load_run_config(write("b.json", R"({"model": {"bias": 1}})")); });
  EXPECT_NE(b.find("model.bias: expected bool, found int"), std::string::npos) << b;
  const std::string f = error_of<ConfigError>([&] { metalm::load_run_config(write("c.json", R"({"model": {"n_layer": 2.5}})")); });
  EXPECT_NE(f.find("model.n_layer: expected int, found float"), std::string::npos) << f;
}

TEST_F(ConfigFiles, UnknownEnumValueListsChoices) {
  const std::string msg = error_of<ConfigError>([&] { metalm::load_run_config(write("a.json", R"({"model": {"norm": "batchnorm"}})")); });
  EXPECT_NE(msg.find("model.norm: unknown value \"batchnorm\" (expected layernorm | rmsnorm | none)"), std::string::npos) << msg;
}

TEST_F(ConfigFiles, ImpossibleValueNamesTheRule) {
  const std::string msg = error_of<ConfigError>([&] { metalm::load_run_config(write("a.json", R"({"model": {"d_model": 100, "n_head": 3}})")); });
  EXPECT_NE(msg.find("model.d_model = 100: must be divisible by model.n_head = 3"), std::string::npos) << msg;
  const std::string seq = error_of<ConfigError>([&] {
    metalm::load_run_config(write("b.json", R"({"model": {"context": 16}, "train": {"seq_len": 32}})"));
  });
  EXPECT_NE(seq.find("train.seq_len = 32: must not exceed model.context = 16"), std::string::npos) << seq;
}

TEST_F(ConfigFiles, MissingFileNamesThePath) {
  const std::string path = (dir / "nope.json").string();
  try {
    metalm::load_run_config(path);
    FAIL() << "no error";
  } catch (const metalm::IoError& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(ConfigOverrides, ParseEveryValueType) {
  RunConfig c;
  metalm::apply_override(c, "model.n_layer=7");
  metalm::apply_override(c, "train.lr=0.25");
  metalm::apply_override(c, "model.bias=false");
  metalm::apply_override(c, "data.dir=/tmp/x=y");
  metalm::apply_override(c, "model.position=rope");
  metalm::apply_override(c, "train.save_steps=0,5,10");
  metalm::apply_override(c, "name=sweep-1");
  EXPECT_EQ(c.model.n_layer, 7);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.25);
  EXPECT_FALSE(c.model.bias);
  EXPECT_EQ(c.data.dir, "/tmp/x=y");
  EXPECT_EQ(c.model.position, metalm::PositionKind::Rope);
  EXPECT_EQ(c.train.save_steps, (std::vector<int64_t>{0, 5, 10}));
  EXPECT_EQ(c.name, "sweep-1");
  metalm::apply_override(c, "train.save_steps=[3]");
  EXPECT_EQ(c.train.save_steps, (std::vector<int64_t>{3}));
  metalm::apply_override(c, "train.lr=1");  // an int literal is a fine float
  EXPECT_DOUBLE_EQ(c.train.lr, 1.0);
}

TEST(ConfigOverrides, BadOverridesAreConfigErrors) {
  RunConfig c;
  EXPECT_NE(error_of<ConfigError>([&] { metalm::apply_override(c, "model.n_layer=six"); }).find("expected int"), std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] { metalm::apply_override(c, "model.bias=yes"); }).find("expected bool"), std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] { metalm::apply_override(c, "train.lr=fast"); }).find("expected float"), std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] { metalm::apply_override(c, "model.norm=batch"); }).find("unknown value"), std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] { metalm::apply_override(c, "model.n_layr=2"); }).find("did you mean \"model.n_layer\""),
            std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] { metalm::apply_override(c, "model=2"); }).find("is a section"), std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] { metalm::apply_override(c, "no-equals-sign"); }).find("expected section.key=value"),
            std::string::npos);
  EXPECT_NE(error_of<ConfigError>([&] { metalm::apply_override(c, "train.save_steps=[1,"); }).find("expected list"),
            std::string::npos);
}

TEST(ConfigKeys, EveryKeyHasATypeADefaultAndADoc) {
  const auto keys = metalm::config_keys();
  EXPECT_GT(keys.size(), 40u);
  for (const auto& k : keys) {
    EXPECT_FALSE(k.type.empty()) << k.path;
    EXPECT_FALSE(k.default_value.empty()) << k.path;
    EXPECT_FALSE(k.doc.empty()) << k.path;
  }
}

// docs/config.md holds every key's row as `metalm config keys` prints it
// (type, default and meaning included, '|' escaped), so a key added, removed
// or changed in the code fails here until the page says the same.
TEST(ConfigKeys, DocsConfigDocumentsEveryKey) {
  std::ifstream in(std::string(METALM_SOURCE_DIR) + "/docs/config.md");
  ASSERT_TRUE(in) << "docs/config.md not found";
  const std::string page((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto cell = [](const std::string& s) {
    std::string out;
    for (char ch : s) out += ch == '|' ? std::string("\\|") : std::string(1, ch);
    return out;
  };
  for (const auto& k : metalm::config_keys()) {
    const std::string row =
        "\n| `" + k.path + "` | " + cell(k.type) + " | `" + k.default_value + "` | " + cell(k.doc) + " |\n";
    EXPECT_NE(page.find(row), std::string::npos) << "docs/config.md lacks the row of " << k.path << ":" << row;
  }
}

TEST(ConfigPresets, EveryShippedConfigLoadsAndValidates) {
  int count = 0;
  for (const auto& entry : fs::recursive_directory_iterator(fs::path(METALM_SOURCE_DIR) / "configs")) {
    if (entry.path().extension() != ".json") continue;
    // configs/icl/ holds icl-train configs, another format (tests/icl checks them).
    if (entry.path().parent_path().filename() == "icl") continue;
    EXPECT_NO_THROW(metalm::load_run_config(entry.path().string())) << entry.path();
    ++count;
  }
  EXPECT_GT(count, 0);
}
