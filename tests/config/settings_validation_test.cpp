// Settings that would run on with a wrong meaning: float settings that are not
// finite, keys said twice, and configs too large or coming from a pipe. Each
// is a one-line ConfigError naming the key or the file, or, for a pipe, simply
// read.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "metalm/config/json.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "support/error_of.hpp"
#include "support/temp_dir.hpp"

namespace metalm {
namespace {

using test::contains;
using test::error_of;

std::vector<std::string> float_keys() {
  std::vector<std::string> keys;
  for (const ConfigKey& k : config_keys())
    if (k.type == "float") keys.push_back(k.path);
  return keys;
}

TEST(FloatSettings, EveryFloatKeyRefusesInfAndNanFromSetNamingTheKey) {
  ASSERT_GE(float_keys().size(), 14u);  // dropouts, norm_eps, init_std, rope_base, lr ... dist.bucket_mb
  for (const std::string& key : float_keys()) {
    for (const char* value : {"inf", "-inf", "nan", "infinity", "1e999"}) {
      RunConfig c;
      const std::string msg = error_of<ConfigError>([&] { apply_override(c, key + "=" + value); });
      EXPECT_TRUE(contains(msg, "--set " + key + "=" + value + ": expected float (a finite number)")) << msg;
    }
  }
}

// A config built in code skips the parser: resolve() is the check.
TEST(FloatSettings, ResolveRefusesEveryNonFiniteFloatNamingTheKey) {
  const double inf = std::numeric_limits<double>::infinity();
  struct Case {
    const char* key;
    void (*set)(RunConfig&, double);
  };
  const Case cases[] = {
      {"model.norm_eps", [](RunConfig& c, double v) { c.model.norm_eps = v; }},
      {"model.rope_base", [](RunConfig& c, double v) { c.model.rope_base = v; }},
      {"model.init_std", [](RunConfig& c, double v) { c.model.init_std = v; }},
      {"train.lr", [](RunConfig& c, double v) { c.train.lr = v; }},
      {"train.grad_clip", [](RunConfig& c, double v) { c.train.grad_clip = v; }},
      {"train.adam_eps", [](RunConfig& c, double v) { c.train.adam_eps = v; }},
      {"train.weight_decay", [](RunConfig& c, double v) { c.train.weight_decay = v; }},
      {"dist.timeout_s", [](RunConfig& c, double v) { c.dist.timeout_s = v; }},
      {"dist.bucket_mb", [](RunConfig& c, double v) { c.dist.bucket_mb = v; }},
  };
  for (const Case& k : cases) {
    for (const double v : {inf, std::nan("")}) {
      RunConfig c;
      k.set(c, v);
      const std::string msg = error_of<ConfigError>([&] { resolve(c); });
      EXPECT_TRUE(contains(msg, std::string(k.key) + " = ") && contains(msg, "must be a finite number")) << msg;
    }
  }
}

TEST(FloatSettings, DistributedTimeoutAndBucketAreBoundedSoTheirConversionsHold) {
  RunConfig c;
  c.dist.timeout_s = 1e300;  // milliseconds beyond int64
  EXPECT_TRUE(
      contains(error_of<ConfigError>([&] { resolve(c); }), "dist.timeout_s = 1e+300: must be from 0.001 to 86400"));
  c.dist.timeout_s = 1e-9;  // zero milliseconds
  EXPECT_TRUE(contains(error_of<ConfigError>([&] { resolve(c); }), "dist.timeout_s"));
  c = RunConfig{};
  c.dist.bucket_mb = 1e300;
  EXPECT_TRUE(
      contains(error_of<ConfigError>([&] { resolve(c); }), "dist.bucket_mb = 1e+300: must be from 0.001 to 1048576"));
  c = RunConfig{};
  c.dist.timeout_s = 86400;
  c.dist.bucket_mb = 0.001;
  EXPECT_NO_THROW(resolve(c));
}

TEST(DuplicateKeys, AConfigSayingOneKeyTwiceIsRefusedNamingIt) {
  const std::string msg = error_of<ConfigError>(
      [&] { run_config_from_json(parse_json(R"({"train": {"lr": 0.1, "steps": 3, "lr": 0.2}})", "dup.json")); });
  EXPECT_EQ(msg, "dup.json: duplicate key \"train.lr\" (each key may appear once in an object)");
  // The same name in two different objects is fine.
  EXPECT_NO_THROW(parse_json(R"({"a": {"seed": 1}, "b": {"seed": 2}, "c": [{"x": 1}, {"x": 2}]})", "ok"));
}

TEST(DuplicateKeys, DataJsonSayingOneKeyTwiceIsAFormatError) {
  const std::string msg = error_of<FormatError>(
      [&] { parse_json(R"({"step": 5, "extra": {}, "step": 7})", "state.json", JsonError::Format); });
  EXPECT_TRUE(contains(msg, "state.json: duplicate key \"step\"")) << msg;
}

TEST(ConfigInput, AConfigLargerThanTheCapFailsBySizeWithoutBeingRead) {
  test::TempDir dir;
  const std::string path = dir / "huge.json";
  std::ofstream(path) << "{}";
  std::filesystem::resize_file(path, uint64_t{4} << 30);  // sparse: 4 GiB, no blocks
  const std::string msg = error_of<IoError>([&] { load_run_config(path); });
  EXPECT_EQ(msg, "cannot read " + path + ": 4294967296 bytes, more than the 16 MiB a config may hold");
}

TEST(ConfigInput, AConfigMayComeFromAPipe) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::thread writer([&] {
    const std::string text = R"({"train": {"lr": 0.125}})";
    EXPECT_EQ(::write(fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fds[1]);
  });
  // What `--config <(jq ...)` passes: /dev/fd/N, a pipe.
  const RunConfig c = load_run_config("/dev/fd/" + std::to_string(fds[0]));
  writer.join();
  ::close(fds[0]);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.125);
}

TEST(ConfigInput, AnEndlessDeviceStopsAtTheCap) {
  const std::string msg = error_of<IoError>([&] { load_run_config("/dev/zero"); });
  EXPECT_EQ(msg, "cannot read /dev/zero: a device that gives more than the 16 MiB a config may hold");
}

TEST(ConfigInput, DataJsonMustStillBeARegularFile) {
  test::TempDir dir;
  ASSERT_EQ(::mkfifo((dir / "state.json").c_str(), 0600), 0);
  const std::string msg = error_of<IoError>([&] { read_json_file(dir / "state.json", JsonError::Format); });
  EXPECT_TRUE(contains(msg, "a FIFO (named pipe), not a regular file")) << msg;
}

}  // namespace
}  // namespace metalm
