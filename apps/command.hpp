// The CLI's subcommand registry. Each apps/cmd_*.cpp file registers one or
// more subcommands with a static Registration; main() parses and runs the one
// chosen. Library errors propagate as metalm::Error and become one-line
// messages in main().
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "metalm/config/config.hpp"
#include "metalm/core/atomic_file.hpp"

namespace metalm::cli {

// Options shared by every subcommand (set on the top-level app).
struct GlobalOptions {
  int threads = 0;  // 0: all cores
  std::string log_level = "info";
};

// Adds a subcommand to `app` and returns the function that runs it (after
// parsing), returning the process exit code.
using CommandSetup = std::function<std::function<int()>(CLI::App& app, const GlobalOptions& global)>;

struct Registration {
  Registration(std::string name, CommandSetup setup);
};

struct RegisteredCommand {
  std::string name;
  CommandSetup setup;
};

std::vector<RegisteredCommand>& registry();

// `--set section.key=value` overrides, repeatable; shared by train, config...
void add_config_options(CLI::App& cmd, std::string& config_path, std::vector<std::string>& overrides,
                        bool config_required);

// Options that set keys of the config, one a key, made from the config's
// field table as `--set` is: named after the key (analysis.batch_size:
// --batch-size), typed by it (N for an integer, the names of an enum, the
// key's name in capitals for text), its value checked as `--set KEY=VALUE`
// checks it (apply_override, then resolve, on the defaults) while the command
// line is read, and the help "WHAT (default: KEY)", WHAT the key's own line
// of documentation unless the command says otherwise. A key whose rule involves
// other keys (train.seq_len against model.context) is not for this: it would
// be checked against the defaults' other keys.
class KeyOptions {
 public:
  // `what`: "" for the key's documentation; `range`: a check of the
  // command's own that runs first (int_range).
  void add(CLI::App& cmd, const std::string& key, const std::string& what,
           const std::optional<CLI::Validator>& range = std::nullopt);
  // Sets the keys given on the command line on `c` and resolves it again.
  void apply(RunConfig& c) const;
  // The text given for `key`, "" when it was not given.
  std::string given(const std::string& key) const;

 private:
  struct Key {
    std::string key, value;
    CLI::Option* option = nullptr;
  };
  std::deque<Key> keys_;  // CLI11 writes into `value`: it must not move
};

// Upper limits of the size options of analyze, eval, generate and bench:
// far above any useful value, low enough that no product of them overflows
// and that a typo fails here, in words, instead of as a huge allocation.
constexpr int64_t kMaxBatch = int64_t{1} << 16;     // sequences per batch
constexpr int64_t kMaxBatches = int64_t{1} << 20;   // batches
constexpr int64_t kMaxTokens = int64_t{1} << 20;    // sequence lengths, strides, tokens to generate
constexpr int64_t kMaxChunk = int64_t{1} << 24;     // positions per autograd chunk
constexpr int64_t kMaxFreqBins = 4096;              // token-frequency bins
constexpr int64_t kMaxAnalysedTokens = int64_t{1} << 24;  // batches x batch size x sequence length

// Range checks of integer and real options whose messages name the option
// and the range in words ("--batch-size: 0 is out of range: expected an
// integer from 1 to 65,536"); CLI11's own print the double limits in full.
CLI::Validator int_range(int64_t min, int64_t max = std::numeric_limits<int64_t>::max());
CLI::Validator real_range(double min, double max);
// Seeds held in 64 bits: decimal digits only (no sign), at most 2^64 - 1.
CLI::Validator seed_range();

// 65536 -> "65,536".
std::string with_commas(int64_t n);

// Rough memory estimates (bytes) of running a model, for
// check_memory_estimate (core/memory.hpp), computed before the model or any
// batch is built. Upper-end approximations, not measurements: they are meant
// to catch sizes off by orders of magnitude, not to budget tightly.
// The parameters in float32.
double parameter_bytes(const ModelConfig& m);
// One forward and backward pass of `batch` sequences of `seq_len` tokens: the
// activations autograd keeps per layer, the attention probabilities and the
// logits with their gradient.
double activation_bytes(const ModelConfig& m, int64_t batch, int64_t seq_len);
// One forward pass without autograd: one layer's activations and attention
// at a time, and the logits with their softmax.
double inference_bytes(const ModelConfig& m, int64_t batch, int64_t seq_len);
// Training: the parameters with their gradients and AdamW's two moments, and
// one micro-batch's forward and backward pass.
double training_bytes(const RunConfig& c);
// An analysis of `n_batches` batches: the parameters, every batch's ids, and
// what one batch holds at once (its forward pass, the float64 log-softmax of
// its logits, every state with its lens read-out and gradient, a chunk's
// float64 logits, softmax and gradients).
double analysis_bytes(const ModelConfig& m, int64_t n_batches, int64_t batch_size, int64_t seq_len,
                      const AnalysisConfig& a);

// check_output_path (the rule of every output option), plus what writing the
// output will need of the directory it goes in, checked before any work is
// done: a file's directory must exist, and a directory's nearest existing
// ancestor (its missing parents are created) must be a directory; either must
// be writable. ConfigError naming `option`, the path and the directory.
// `inputs`: what the command reads, which the output may not overlap.
void check_output(const std::string& path, OutputKind kind, bool force, const std::string& option,
                  const std::vector<CommandInput>& inputs = {});

// The directory a tokenizer spec reads (gpt2, gpt2:DIR, bpe:DIR) as an input
// named --tokenizer; none for byte.
std::vector<CommandInput> tokenizer_input(const std::string& spec);

// --device auto|cpu|cuda (where the model runs; auto: cuda when available)
// and --precision fp32|bf16|auto (bf16: the matmuls of the forward pass under
// autocast; auto: bf16 where the device multiplies bf16 natively) of the commands that run a model.
void add_device_option(CLI::App& cmd, std::string& device);
void add_precision_option(CLI::App& cmd, std::string& precision);
DeviceKind device_kind(const std::string& device);  // a value add_device_option accepted
Precision precision_kind(const std::string& precision);

}  // namespace metalm::cli
