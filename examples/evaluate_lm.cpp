// examples/evaluate_lm: evaluates a train_lm checkpoint on the valid and test
// splits of any corpus folder, clean and under the word-swap attack, by batch
// (an AC layer's statistics over each batch, as in training), causally (each
// token from its own prefix, as at generation) or both, with a progress line
// per evaluation, and prints the table.
//
//   evaluate_lm --checkpoint runs/acmoe/checkpoint.safetensors [--data data/kjv] [--eval both]
//   evaluate_lm ... --out runs/acmoe/eval.jsonl    also appends the results as one JSON record
#include <cstdio>
#include <nlohmann/json.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "examples/common/lm_model.h"

using namespace moegrad;
using namespace moegrad::lm;

namespace {

struct Options {
  std::string checkpoint, data, eval = "both", device = "cpu", out;
  int64_t batch = 0, threads = 0, attack_seed = -1;
  double attack_rate = -1;
};

std::vector<ConfigField> fields(Options& o) {
  return {
      {"checkpoint", &o.checkpoint, "train_lm's checkpoint.safetensors (required)", false},
      {"data", &o.data, "folder with valid.txt and test.txt; empty: the checkpoint's --data", false},
      {"eval", &o.eval, "batch | causal | both", false},
      {"batch", &o.batch, "windows per evaluation batch; 0: the checkpoint's training forward (--micro-batch, else --batch)",
       false},
      {"attack-rate", &o.attack_rate, "word-swap attack rate; < 0: the checkpoint's", false},
      {"attack-seed", &o.attack_seed, "word-swap attack seed; < 0: the checkpoint's", false},
      {"device", &o.device, "cpu | cuda", false},
      {"threads", &o.threads, "OpenMP threads; 0: OpenMP's default", false},
      {"out", &o.out, "a metrics file to append the results to as one JSON record; empty: none", false},
  };
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  return run_program(argc, argv, "evaluate_lm", "evaluate_lm --checkpoint PATH [--flag value ...]", fields(o), [&] {
    MG_CHECK(!o.checkpoint.empty(), "evaluate_lm: --checkpoint is required (see --help)");
    check_one_of(o.eval, "evaluate_lm", "eval", {"batch", "causal", "both"});
    MG_CHECK(o.batch >= 0 && o.threads >= 0, "evaluate_lm: --batch and --threads must be >= 0");
#ifdef _OPENMP
    if (o.threads > 0) omp_set_num_threads(static_cast<int>(o.threads));
#endif
    const Device device = parse_device(o.device, "evaluate_lm");
    TrainedLM lm = load_trained_lm(o.checkpoint, device);
    const LMTrainConfig& c = lm.config;
    const std::string data_dir = o.data.empty() ? c.data : o.data;
    const data::TextFiles files{"", data::read_text_file(data_dir + "/valid.txt"),
                                data::read_text_file(data_dir + "/test.txt")};
    MG_CHECK(o.attack_rate < 0 || o.attack_rate <= 1, "evaluate_lm: --attack-rate must be <= 1, got ", o.attack_rate);
    const EvalSplits splits =
        make_eval_splits(files.valid, files.test, *lm.tokenizer, c.level, o.attack_rate < 0 ? c.attack_rate : o.attack_rate,
                         o.attack_seed < 0 ? c.attack_seed : o.attack_seed, o.batch > 0 ? o.batch : (c.micro_batch > 0 ? c.micro_batch : c.batch), c.seq_len);
    const bool byte_level = c.level == "byte";
    nlohmann::json record = {{"type", "evaluation"}, {"checkpoint", o.checkpoint}, {"step", lm.step},
                             {"data", data_dir}, {"router", c.router}, {"metric", byte_level ? "bits/byte" : "perplexity"}};
    std::printf("%s (router %s), step %lld, on %s:\n  %-24s %10s %12s\n", effective_arch(c).c_str(), c.router.c_str(),
                (long long)lm.step, data_dir.c_str(), "split", "loss", byte_level ? "bits/byte" : "perplexity");
    for (EvalMode mode : {EvalMode::Batch, EvalMode::Causal}) {
      const bool causal = mode == EvalMode::Causal;
      if (o.eval != "both" && (o.eval == "causal") != causal) continue;
      for (const char* split : {"valid", "test"})
        for (bool attacked : {false, true}) {
          const std::string name = std::string(split) + (attacked ? "_attacked" : "") + (causal ? "_causal" : "");
          const std::vector<data::Batch>& batches = splits.get(split, attacked);
          data::ProgressOptions po;
          po.total_steps = static_cast<int64_t>(batches.size()), po.label = "eval " + name;
          po.every = std::max<int64_t>(1, po.total_steps / 10);
          data::Progress progress(po);
          const EvalResult r = evaluate_lm(*lm.model, batches, 0, mode, device, byte_level, &progress);
          progress.finish();
          std::printf("  %-24s %10.4f %12.4f\n", name.c_str(), r.loss, r.metric);
          std::fflush(stdout);
          record[name] = {{"loss", r.loss}, {"metric", r.metric}, {"tokens", r.tokens}, {"batches", r.batches}};
        }
    }
    if (!o.out.empty()) data::MetricsWriter(o.out).write(record);
  });
}
