// `metalm bench tokenizer`: encoding throughput of a tokenizer on one thread.
// Prints one JSON line: bytes, tokens, seconds, MB/s (best of --repeat runs,
// the first run also filling the BPE cache as it would in real use).
#include <chrono>
#include <ctime>
#include <iostream>

#include <nlohmann/json.hpp>

#include "bench.hpp"
#include "metalm/core/error.hpp"
#include "metalm/data/corpus.hpp"
#include "metalm/data/tokenizer.hpp"

namespace metalm::cli {
namespace {

const BenchRegistration bench_tokenizer{
    "tokenizer", "encoding throughput (MB/s) of a tokenizer on one thread", [](CLI::App& tok, const GlobalOptions&) {
  struct Options {
    std::string tokenizer = "gpt2";
    std::vector<std::string> inputs;
    std::string format = "text";
    int repeat = 3;
    std::string ids_out;
    std::string text_out;
    bool force = false;
  };
  auto o = std::make_shared<Options>();
  tok.add_option("--tokenizer", o->tokenizer, "byte | gpt2 | gpt2:DIR | bpe:DIR")->type_name("SPEC")->capture_default_str();
  tok.add_option("--input", o->inputs, "corpus files or directories")->type_name("PATH")->required();
  tok.add_option("--format", o->format, "text | brown")->type_name("FORMAT")
      ->check(CLI::IsMember({"text", "brown"}))->capture_default_str();
  tok.add_option("--repeat", o->repeat, "timed passes; the fastest counts")->type_name("N")
      ->check(int_range(1, 1 << 20))->capture_default_str();
  tok.add_option("--ids-out", o->ids_out, "also write all ids, one per line (to compare with another encoder)")
      ->type_name("FILE");
  tok.add_option("--text-out", o->text_out, "also write the encoded text (the corpus as one string)")
      ->type_name("FILE");
  tok.add_flag("--force", o->force, "replace existing --ids-out and --text-out files");
  return std::function<int()>([o]() {
    std::vector<CommandInput> inputs = tokenizer_input(o->tokenizer);
    for (const auto& input : o->inputs) inputs.push_back({"--input", input, /*tree=*/true});
    if (!o->ids_out.empty()) check_output(o->ids_out, OutputKind::File, o->force, "--ids-out", inputs);
    inputs.push_back({"--ids-out", o->ids_out});
    if (!o->text_out.empty()) check_output(o->text_out, OutputKind::File, o->force, "--text-out", inputs);
    const auto docs = read_corpus(o->inputs, o->format);
    // One text, as the node side sees it, so both encode the same bytes.
    std::string text;
    for (const auto& d : docs) text += d.text;
    if (!o->text_out.empty()) write_file_atomic(o->text_out, text);
    const auto tokenizer = make_tokenizer(o->tokenizer);
    // CPU time beside wall time: on a shared machine it is the fairer figure.
    double best = 1e300, first = 0, best_cpu = 1e300;
    std::vector<int64_t> ids;
    for (int r = 0; r < o->repeat; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      const std::clock_t c0 = std::clock();
      ids = tokenizer->encode(text);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best_cpu = std::min(best_cpu, static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC);
      if (r == 0) first = s;
      best = std::min(best, s);
    }
    if (!o->ids_out.empty()) {
      std::string lines;
      for (const int64_t id : ids) lines += std::to_string(id) + '\n';
      write_file_atomic(o->ids_out, lines);
    }
    const double mb = static_cast<double>(text.size()) / 1e6;
    std::cout << nlohmann::json{{"tokenizer", tokenizer->spec()}, {"bytes", text.size()}, {"tokens", ids.size()},
                                {"seconds_first", first}, {"seconds_best", best}, {"mb_per_s_first", mb / first},
                                {"mb_per_s", mb / best},
                                {"cpu_seconds_best", best_cpu}, {"mb_per_s_cpu", mb / best_cpu}}
                     .dump()
              << "\n";
    return 0;
  });
}};

}  // namespace
}  // namespace metalm::cli
