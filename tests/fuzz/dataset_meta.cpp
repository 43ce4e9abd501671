// Fuzz target: a dataset's meta.json (read by train, analyze and eval for the
// tokenizer, bits per byte and token frequencies). What it accepts must
// serialise back to an equal record.
#include "fuzz_util.hpp"
#include "metalm/data/dataset_meta.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace metalm;
  const std::string path = fuzz::write_scratch("meta.json", fuzz::as_text(data, size));
  fuzz::expect_errors([&] {
    const DatasetMeta meta = read_dataset_meta(path);
    fuzz::require(static_cast<int64_t>(meta.train_counts.size()) == meta.vocab_size, "one count per token id");
    (void)meta.bytes_per_token(meta.train);
    (void)meta.bytes_per_token(meta.val);
    const DatasetMeta again = dataset_meta_from_json(to_json(meta), "round trip");
    fuzz::require(to_json(again) == to_json(meta), "meta.json reads back identical");
  });
  return 0;
}
