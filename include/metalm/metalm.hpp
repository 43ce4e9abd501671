// The whole public API of metalm in one include:
//
//   #include <metalm/metalm.hpp>
//
// with `find_package(metalm CONFIG REQUIRED)` and
// `target_link_libraries(my_tool PRIVATE metalm::metalm)` (which also brings
// the C++17 requirement). Each header below can be included on its own as
// well; they are listed in the dependency order of the concerns
// (docs/design.md section 2), and docs/library.md walks through the examples
// in apps/examples/. A test checks that every public header is listed here.
#pragma once

// core: errors, files, logging, threads, version
#include "metalm/core/atomic_file.hpp"
#include "metalm/core/cpu.hpp"
#include "metalm/core/error.hpp"
#include "metalm/core/file.hpp"
#include "metalm/core/hash.hpp"
#include "metalm/core/log.hpp"
#include "metalm/core/memory.hpp"
#include "metalm/core/suggest.hpp"
#include "metalm/core/threads.hpp"
#include "metalm/core/version.hpp"

// config: the typed experiment configuration and its JSON form
#include "metalm/config/config.hpp"
#include "metalm/config/json.hpp"

// io: safetensors and the Hugging Face GPT-2 mapping
#include "metalm/io/hf_gpt2.hpp"
#include "metalm/io/safetensors.hpp"

// data: tokenizers, corpora, token files and their samplers
#include "metalm/data/bpe_tokenizer.hpp"
#include "metalm/data/bpe_trainer.hpp"
#include "metalm/data/byte_tokenizer.hpp"
#include "metalm/data/corpus.hpp"
#include "metalm/data/dataset_meta.hpp"
#include "metalm/data/prepare.hpp"
#include "metalm/data/pretokenizer.hpp"
#include "metalm/data/token_dataset.hpp"
#include "metalm/data/token_file.hpp"
#include "metalm/data/tokenizer.hpp"
#include "metalm/data/unicode.hpp"

// model: the causal Transformer, its parts and activation capture
#include "metalm/model/attention.hpp"
#include "metalm/model/block.hpp"
#include "metalm/model/causal_transformer.hpp"
#include "metalm/model/device.hpp"
#include "metalm/model/eval_scope.hpp"
#include "metalm/model/fused.hpp"
#include "metalm/model/mlp.hpp"
#include "metalm/model/norm.hpp"
#include "metalm/model/parameter_count.hpp"
#include "metalm/model/positions.hpp"
#include "metalm/model/runtime.hpp"
#include "metalm/model/trace.hpp"
#include "metalm/model/weights.hpp"

// analysis: the inner-optimization analysis
#include "metalm/analysis/analyze_model.hpp"
#include "metalm/analysis/controls.hpp"
#include "metalm/analysis/csv_export.hpp"
#include "metalm/analysis/inference.hpp"
#include "metalm/analysis/intervene.hpp"
#include "metalm/analysis/lens.hpp"
#include "metalm/analysis/linear_icl.hpp"
#include "metalm/analysis/objective.hpp"
#include "metalm/analysis/report.hpp"
#include "metalm/analysis/summary.hpp"
#include "metalm/analysis/trajectory.hpp"
#include "metalm/analysis/tuned_lens.hpp"

// train: the outer loop and its parts
#include "metalm/train/checkpoint.hpp"
#include "metalm/train/distributed.hpp"
#include "metalm/train/evaluate.hpp"
#include "metalm/train/hf_import.hpp"
#include "metalm/train/jsonl_log.hpp"
#include "metalm/train/lens_train.hpp"
#include "metalm/train/lr_schedule.hpp"
#include "metalm/train/optimizer.hpp"
#include "metalm/train/retention.hpp"
#include "metalm/train/rng_state.hpp"
#include "metalm/train/run_lock.hpp"
#include "metalm/train/sharded_sampler.hpp"
#include "metalm/train/trainer.hpp"

// icl: in-context regression, trained attention layers and reference algorithms
#include "metalm/icl/compare.hpp"
#include "metalm/icl/icl_config.hpp"
#include "metalm/icl/model.hpp"
#include "metalm/icl/reference.hpp"
#include "metalm/icl/task.hpp"
#include "metalm/icl/train.hpp"
