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
//   mpirun -np 2 train_lm ...    data parallel over 2 ranks (a build with MPI; docs/training.md)
//   mpirun -np 2 train_lm ... --expert-parallel    each rank holds half of every MoE layer's experts
//
// With several ranks, an error while setting up (options, data, model) ends
// every rank with the same message; an error while training ends them all.
#include <cstdio>

#include "dist/communicator.h"
#include "examples/common/lm_trainer.h"

using namespace moegrad;

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      std::printf("usage: train_lm [--flag value ...]\n\n%s", lm::usage().c_str());
      return 0;
    }
  dist::CommPtr comm;
  std::unique_ptr<lm::LMTrainer> trainer;
  try {
    comm = dist::world();
    dist::run_on_all_or_fail(*comm, [&] { trainer = std::make_unique<lm::LMTrainer>(lm::parse_args(args), stderr, comm); });
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  try {
    trainer->train();
    if (!trainer->evaluates_here()) return 0;
    const lm::FinalReport f = trainer->final_report();
    if (comm->rank() != 0) return 0;
    const lm::LMTrainConfig& c = trainer->config();
    std::printf("\n%s (router %s), step %lld, whole splits:\n", lm::effective_arch(c).c_str(), c.router.c_str(),
                (long long)trainer->step());
    std::printf("  %-24s %10s %12s\n", "split", "loss", trainer->metric_name());
    for (const auto& [name, r] : f.results) std::printf("  %-24s %10.4f %12.4f\n", name.c_str(), r.loss, r.metric);
    std::printf("  training speed: %.0f tokens/s\n", f.tokens_per_second);
    std::printf("  metrics: %s\n  checkpoint: %s\n", trainer->metrics_path().c_str(),
                trainer->checkpoint_path().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    std::fflush(stderr);
    if (comm->world_size() > 1) comm->abort_all(1);  // the others may wait in a collective
    return 1;
  }
  return 0;
}
