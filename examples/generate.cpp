// examples/generate: prints text from a train_lm checkpoint, token by token
// as it is produced, with a key/value cache and (for AC layers) the AC
// statistics of the context so far (moe/decoder.h).
//
//   generate --checkpoint runs/acmoe/checkpoint.safetensors --prompt "In the beginning" --tokens 300
//   generate ... --temperature 0.8 --top-k 40 --top-p 0.95 --seed 7
//   generate ... --prompt-file prompt.txt --temperature 0      (greedy)
#include <cstdio>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "examples/common/lm_generate.h"
#include "examples/common/lm_model.h"

using namespace moegrad;
using namespace moegrad::lm;

namespace {

struct Options {
  std::string checkpoint, prompt, prompt_file, device = "cpu";
  int64_t tokens = 200, seed = 0, threads = 0, top_k = 0;
  double temperature = 1.0, top_p = 1.0;
};

std::vector<ConfigField> fields(Options& o) {
  return {
      {"checkpoint", &o.checkpoint, "train_lm's checkpoint.safetensors (required)", false},
      {"prompt", &o.prompt, "the text to continue (empty: a new line)", false},
      {"prompt-file", &o.prompt_file, "read the prompt from this file instead", false},
      {"tokens", &o.tokens, "tokens to generate", false},
      {"temperature", &o.temperature, "softmax temperature; 0: greedy", false},
      {"top-k", &o.top_k, "sample among the k most likely tokens; 0: all", false},
      {"top-p", &o.top_p, "sample among the fewest most likely tokens whose probability reaches p", false},
      {"seed", &o.seed, "seed of the sampling", false},
      {"device", &o.device, "cpu | cuda", false},
      {"threads", &o.threads, "OpenMP threads; 0: OpenMP's default", false},
  };
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  return run_program(argc, argv, "generate", "generate --checkpoint PATH [--flag value ...]", fields(o), [&] {
    MG_CHECK(!o.checkpoint.empty(), "generate: --checkpoint is required (see --help)");
    MG_CHECK(o.prompt.empty() || o.prompt_file.empty(), "generate: give --prompt or --prompt-file, not both");
    MG_CHECK(o.tokens >= 0 && o.seed >= 0 && o.threads >= 0, "generate: --tokens, --seed and --threads must be >= 0");
    const SamplingOptions sampling{o.temperature, o.top_k, o.top_p};
    check_sampling(sampling);
#ifdef _OPENMP
    if (o.threads > 0) omp_set_num_threads(static_cast<int>(o.threads));
#endif
    const Device device = parse_device(o.device, "generate");
    TrainedLM lm = load_trained_lm(o.checkpoint, device);
    const std::string prompt = o.prompt_file.empty() ? o.prompt : data::read_text_file(o.prompt_file);
    std::vector<int64_t> ids = lm.tokenizer->encode(prompt.empty() ? "\n" : prompt);
    if (ids.empty()) ids = lm.tokenizer->encode("\n");
    // the prompt as the model sees it (words outside the vocabulary as <unk>), then each token as it comes:
    // the new end of the decoded text
    std::vector<int64_t> all = ids;
    std::string printed = lm.tokenizer->decode(all);
    std::fputs(printed.c_str(), stdout);
    Generator gen(static_cast<uint64_t>(o.seed));
    generate(*lm.model, ids, o.tokens, sampling, gen, device, [&](int64_t id) {
      all.push_back(id);
      const std::string text = lm.tokenizer->decode(all);
      const bool extends = text.compare(0, printed.size(), printed) == 0;
      std::fputs(extends ? text.c_str() + printed.size() : (" " + lm.tokenizer->decode({id})).c_str(), stdout);
      std::fflush(stdout);
      printed = text;
    });
    std::fputs("\n", stdout);
  });
}
