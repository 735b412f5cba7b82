// dist_bench: tokens per second of one MoE layer's training step (forward,
// backward, gradient exchange, Adam) over ranks, for the three ways to run it:
//
//   dist_bench --mode single                   one process, every token, every expert
//   mpirun -np 2 dist_bench --mode data        each rank 1/N of the tokens, every expert;
//                                              all gradients averaged (one all-reduce)
//   mpirun -np 2 dist_bench --mode expert      each rank 1/N of the tokens, E/N experts;
//                                              rows exchanged with all-to-alls, the router's
//                                              gradients averaged
//
// Flags: --tokens (global tokens per step, 4096), --dim 128, --experts 16,
// --hidden 128, --k 2, --steps 20 (timed, after 3 untimed). Rank 0 prints one
// line: the mode, the ranks, OpenMP's threads, and the global tokens per
// second at the median step.
#include <omp.h>

#include <cstdio>
#include <string>

#include "bench/bench_util.h"
#include "dist/data_parallel.h"
#include "moe/moe_layer.h"
#include "nn/optim.h"

using namespace moegrad;

int main(int argc, char** argv) {
  try {
    const std::string mode = bench::flag(argc, argv, "--mode", "single");
    const int64_t tokens = bench::flag_int(argc, argv, "--tokens", 4096), steps = bench::flag_int(argc, argv, "--steps", 20);
    MoEConfig c;
    c.dim = bench::flag_int(argc, argv, "--dim", 128), c.experts = bench::flag_int(argc, argv, "--experts", 16);
    c.hidden = bench::flag_int(argc, argv, "--hidden", 128), c.k = bench::flag_int(argc, argv, "--k", 2);
    MG_CHECK(mode == "single" || mode == "data" || mode == "expert", "dist_bench: --mode must be single | data | ",
             "expert, got '", mode, "'");
    dist::CommPtr comm = dist::world();
    if (mode == "single") MG_CHECK(comm->world_size() == 1, "dist_bench: --mode single runs without mpirun");
    const auto [first, local] = dist::local_rows(*comm, tokens, "dist_bench: --tokens");
    Generator gen(1);
    MoELayer layer(c, InitOptions{DType::Float32, &gen}, mode == "expert" ? comm : nullptr);
    Adam adam(layer.parameters(), AdamOptions{1e-3, 0.9, 0.999, 1e-8, 0.0});
    // the parameters every rank holds whole, and those (the experts) only their owner holds
    std::vector<Tensor> shared = mode == "expert" ? layer.router->parameters() : layer.parameters();
    dist::broadcast_parameters(*comm, shared);
    Generator data_gen(2);
    const Tensor x = narrow(Tensor::randn({tokens, c.dim}, 0, 1, DType::Float32, &data_gen), 0, first, local);
    const bench::Timing t = bench::time_runs(3, static_cast<int>(steps), 1, [&] {
      adam.zero_grad();
      MoEOutput out = layer.forward(x);
      (mean(mul(out.y, out.y)) + out.balance_loss * 0.01).backward();
      dist::average_gradients(*comm, shared);
      adam.step();
    });
    if (comm->rank() == 0)
      std::printf("mode %s, %d rank(s) x %d thread(s): %.0f tokens/s (median step %.1f ms, %lld tokens)\n",
                  mode.c_str(), comm->world_size(), omp_get_max_threads(), tokens / (t.median() / 1000.0),
                  t.median(), static_cast<long long>(tokens));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
