// Typed experiment configuration. Every key has a default, a type and a line
// of documentation, declared once in the struct's `fields` function; JSON
// reading, writing, `--set` overrides and the key reference all walk it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace metalm {

enum class NormKind { LayerNorm, RmsNorm, None };
enum class NormPosition { Pre, Post };
enum class PositionKind { Learned, Sinusoidal, Rope, None };
enum class AttentionKind { Softmax, Linear };
enum class MlpKind { Gelu, GeluTanh, Relu, None };
enum class LrSchedule { Cosine, Constant };
enum class Granularity { Block, Sublayer };
// Arithmetic of the training matmuls: fp32, or bf16 under autocast (master
// weights, optimizer state, loss and gradient norm stay fp32). Auto is bf16
// where the device multiplies bf16 natively, else fp32 (resolve_precision).
enum class Precision { Fp32, Bf16, Auto };
// Where tensors live: auto means cuda when libtorch has a usable GPU.
enum class DeviceKind { Auto, Cpu, Cuda };

struct ModelConfig {
  int64_t vocab_size = 256;
  int64_t context = 256;
  int64_t d_model = 256;
  int64_t n_layer = 4;
  int64_t n_head = 4;
  int64_t d_mlp = 0;  // 0: 4 * d_model (resolved by resolve())
  NormKind norm = NormKind::LayerNorm;
  NormPosition norm_position = NormPosition::Pre;
  PositionKind position = PositionKind::Learned;
  AttentionKind attention = AttentionKind::Softmax;
  MlpKind mlp = MlpKind::Gelu;
  bool bias = true;
  bool tie_embeddings = true;
  double embd_dropout = 0.0;
  double attn_dropout = 0.0;
  double resid_dropout = 0.0;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  double rope_base = 10000.0;

  int64_t head_dim() const { return d_model / n_head; }

  template <class Self, class V>
  static void fields(Self& c, V&& v) {
    v("vocab_size", c.vocab_size, "number of token ids (must cover the tokenizer's vocabulary)");
    v("context", c.context, "maximum sequence length (positions)");
    v("d_model", c.d_model, "width of the residual stream");
    v("n_layer", c.n_layer, "number of Transformer blocks");
    v("n_head", c.n_head, "attention heads per block; must divide d_model");
    v("d_mlp", c.d_mlp, "hidden width of the MLP; 0 means 4 * d_model");
    v("norm", c.norm, "normalisation: layernorm | rmsnorm | none");
    v("norm_position", c.norm_position, "pre (GPT-2) or post (original Transformer) normalisation");
    v("position", c.position, "position encoding: learned | sinusoidal | rope | none");
    v("attention", c.attention, "softmax, or linear (causal, no softmax, scaled by 1/position count)");
    v("mlp", c.mlp, "MLP activation: gelu | gelu_tanh | relu | none (attention-only model)");
    v("bias", c.bias, "biases in linear layers and norms");
    v("tie_embeddings", c.tie_embeddings, "unembedding shares the token embedding matrix");
    v("embd_dropout", c.embd_dropout, "dropout after the embeddings");
    v("attn_dropout", c.attn_dropout, "dropout on attention weights");
    v("resid_dropout", c.resid_dropout, "dropout on what each sublayer adds to the residual stream");
    v("norm_eps", c.norm_eps, "epsilon of the normalisation layers");
    v("init_std", c.init_std, "std of the normal initialisation (GPT-2: 0.02)");
    v("rope_base", c.rope_base, "base of the rotary frequencies (position = rope)");
  }
};

struct DataConfig {
  std::string dir = "data/brown-byte";

  template <class Self, class V>
  static void fields(Self& c, V&& v) {
    v("dir", c.dir, "prepared dataset directory (train.bin, val.bin, meta.json from `metalm prepare`)");
  }
};

struct TrainConfig {
  int64_t steps = 1000;
  int64_t batch_size = 16;
  int64_t seq_len = 0;  // 0: model.context
  int64_t grad_accum = 1;
  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup_steps = 100;
  LrSchedule schedule = LrSchedule::Cosine;
  double weight_decay = 0.1;
  bool decay_embeddings = false;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double adam_eps = 1e-8;
  double grad_clip = 1.0;
  int64_t eval_every = 200;
  int64_t eval_batches = 20;
  int64_t log_every = 10;
  int64_t ckpt_every = 500;
  int64_t keep_last = 2;
  std::vector<int64_t> save_steps;
  int64_t seed = 1337;
  int64_t threads = 0;
  Precision precision = Precision::Fp32;
  DeviceKind device = DeviceKind::Auto;

  // Tokens one optimizer step trains on, over `world_size` ranks (seq_len
  // as resolved).
  int64_t tokens_per_step(int64_t world_size = 1) const { return batch_size * seq_len * grad_accum * world_size; }

  template <class Self, class V>
  static void fields(Self& c, V&& v) {
    v("steps", c.steps, "optimizer steps (outer iterations)");
    v("batch_size", c.batch_size, "sequences per micro-batch");
    v("seq_len", c.seq_len, "tokens per training sequence; 0 means model.context");
    v("grad_accum", c.grad_accum, "micro-batches accumulated per optimizer step");
    v("lr", c.lr, "peak learning rate");
    v("min_lr", c.min_lr, "learning rate at the end of the cosine schedule");
    v("warmup_steps", c.warmup_steps, "linear warmup steps");
    v("schedule", c.schedule, "after warmup: cosine (to min_lr) | constant");
    v("weight_decay", c.weight_decay, "AdamW decoupled weight decay, on weight matrices only");
    v("decay_embeddings", c.decay_embeddings, "also decay the embedding tables");
    v("beta1", c.beta1, "AdamW beta1");
    v("beta2", c.beta2, "AdamW beta2");
    v("adam_eps", c.adam_eps, "AdamW epsilon");
    v("grad_clip", c.grad_clip, "clip the global gradient norm to this; 0 disables");
    v("eval_every", c.eval_every, "evaluate on the validation split every N steps; 0 only at the end");
    v("eval_batches", c.eval_batches, "validation batches per evaluation (a fixed set of windows)");
    v("log_every", c.log_every, "progress line and train metrics every N steps");
    v("ckpt_every", c.ckpt_every, "checkpoint every N steps (and at the end); 0 only at the end");
    v("keep_last", c.keep_last, "periodic checkpoints kept (the best and save_steps are kept too)");
    v("save_steps", c.save_steps, "extra steps whose checkpoints are kept for good, e.g. [0, 100]");
    v("seed", c.seed, "seed of initialisation, data sampling and dropout");
    v("threads", c.threads, "intra-op threads, 0 to 256; 0 means all cores (the CLI's --threads overrides)");
    v("precision", c.precision, "fp32 | bf16 | auto (bf16: matmuls under autocast in bfloat16; weights, AdamW state, loss and checkpoints stay fp32; auto: bf16 where the device multiplies bf16 natively, else fp32)");
    v("device", c.device, "auto (cuda when available, else cpu) | cpu | cuda");
  }
};

struct AnalysisConfig {
  int64_t every = 0;
  int64_t batches = 2;
  int64_t batch_size = 8;
  Granularity granularity = Granularity::Block;
  int64_t chunk = 2048;
  int64_t freq_bins = 8;
  int64_t seed = 1234;
  int64_t bootstrap = 1000;
  int64_t permutations = 100;
  std::string lens = "logit";  // "logit" or "tuned:PATH" (a file of `metalm lens-train`)

  // The tuned-lens file of lens = "tuned:PATH" ("" for the logit lens).
  std::string tuned_lens_path() const { return lens.rfind("tuned:", 0) == 0 ? lens.substr(6) : std::string(); }

  template <class Self, class V>
  static void fields(Self& c, V&& v) {
    v("every", c.every, "analyse the inner optimization every N training steps; 0 disables");
    v("batches", c.batches, "validation batches analysed each time (fixed windows)");
    v("batch_size", c.batch_size, "sequences per analysed batch");
    v("granularity", c.granularity, "block (one step per block) | sublayer (attention and MLP steps)");
    v("chunk", c.chunk, "positions per autograd chunk (bounds memory)");
    v("freq_bins", c.freq_bins, "log-spaced token-frequency bins");
    v("seed", c.seed, "seed of the controls' draws and of the bootstrap");
    v("bootstrap", c.bootstrap, "bootstrap resamples (over sequences) of every mean's 95 % interval");
    v("permutations", c.permutations, "permutations of the null band of each step's mean alignment");
    v("lens", c.lens, "logit (the model's own final norm and unembedding) | tuned:PATH (a tuned lens from `metalm lens-train`)");
  }
};

// Data-parallel training settings. Who runs (rank, world size, master
// address) is a property of the launch, not of the experiment: it comes from
// torchrun-style environment variables or --dist-* flags, never from here.
struct DistConfig {
  double timeout_s = 60.0;
  double bucket_mb = 25.0;

  template <class Self, class V>
  static void fields(Self& c, V&& v) {
    v("timeout_s", c.timeout_s, "seconds a rank waits for the others (rendezvous, collectives) before failing");
    v("bucket_mb", c.bucket_mb, "size of the flat gradient buckets averaged by one allreduce each");
  }
};

struct RunConfig {
  std::string name = "run";
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  AnalysisConfig analysis;
  DistConfig dist;

  template <class Self, class V>
  static void fields(Self& c, V&& v) {
    v("name", c.name, "a label for the run, copied into metrics");
    v("model", c.model, "");
    v("data", c.data, "");
    v("train", c.train, "");
    v("analysis", c.analysis, "");
    v("dist", c.dist, "");
  }
};

// Enum <-> string, with the names used in JSON.
std::string to_string(NormKind v);
std::string to_string(NormPosition v);
std::string to_string(PositionKind v);
std::string to_string(AttentionKind v);
std::string to_string(MlpKind v);
std::string to_string(LrSchedule v);
std::string to_string(Granularity v);
std::string to_string(Precision v);
std::string to_string(DeviceKind v);

// Fills derived defaults (d_mlp = 4 * d_model, seq_len = context) and checks
// every rule; throws ConfigError naming the key and the rule.
void resolve(ModelConfig& c);
void resolve(RunConfig& c);

// One documented key, for `metalm config keys` and docs/config.md.
struct ConfigKey {
  std::string path;     // "model.n_layer"
  std::string type;     // "int", "float", "bool", "string", "enum", "list of int"
  std::string default_value;  // as JSON
  std::string doc;
};
std::vector<ConfigKey> config_keys();

}  // namespace metalm
