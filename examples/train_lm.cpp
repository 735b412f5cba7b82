// examples/train_lm: trains a byte- or word-level MoE language model from a
// corpus folder (train.txt, valid.txt, test.txt) with the top-k (--router
// smoe) or AC router (--router acmoe), then evaluates the whole valid and
// test splits, clean and under the word-swap attack (batch and/or causal
// evaluation: --eval), and prints a report.
// Every flag is listed by --help; the trainer is examples/common/lm_trainer.
//
//   train_lm --data data/kjv --router acmoe --steps 2000 --out runs/acmoe
//   train_lm ... --resume        continues from runs/acmoe/checkpoint.safetensors
//   train_lm ... --device cuda   trains on the GPU (a CUDA build with a visible GPU)
#include <cstdio>

#include "examples/common/lm_trainer.h"

using namespace moegrad;

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      std::printf("usage: train_lm [--flag value ...]\n\n%s", lm::usage().c_str());
      return 0;
    }
  try {
    lm::LMTrainer trainer(lm::parse_args(args));
    trainer.train();
    const lm::FinalReport f = trainer.final_report();
    const lm::LMTrainConfig& c = trainer.config();
    std::printf("\n%s (router %s), step %lld, whole splits:\n", lm::effective_arch(c).c_str(), c.router.c_str(),
                (long long)trainer.step());
    std::printf("  %-24s %10s %12s\n", "split", "loss", trainer.metric_name());
    for (const auto& [name, r] : f.results) std::printf("  %-24s %10.4f %12.4f\n", name.c_str(), r.loss, r.metric);
    std::printf("  training speed: %.0f tokens/s\n", f.tokens_per_second);
    std::printf("  metrics: %s\n  checkpoint: %s\n", trainer.metrics_path().c_str(), trainer.checkpoint_path().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
