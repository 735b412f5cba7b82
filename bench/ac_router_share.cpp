// How much of a MoE layer's forward+backward time the AC router adds, on CPU.
// Times (median of --reps runs after warm-up) one MoE layer with the top-k
// router and the same layer with the AC router (detached, the paper's mode,
// and differentiable), plus the AC weighting alone (cluster weights and the
// fused scale-gather x ⊙ W[c], forward and backward). The direct measurement
// is the one to read on a busy machine: the difference of two layer timings
// is within their noise. The paper calls the overhead negligible.
//
//   ./build/ac_router_share [--tokens 2048] [--dim 128] [--experts 16] [--k 2] [--hidden 128] [--reps 30]
#include <cstdio>

#include "autograd/node.h"
#include "bench/bench_util.h"
#include "moe/moe_layer.h"

using namespace moegrad;

namespace {

// Median of reps timed runs after 3 warm-up runs (allocator cache, page faults).
template <typename F>
double median_ms(int reps, F&& f) {
  return bench::time_runs(3, reps, 1, f).median();
}

int64_t arg(int argc, char** argv, const char* name, int64_t fallback) {
  return bench::flag_int(argc, argv, name, fallback);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t n = arg(argc, argv, "--tokens", 2048), d = arg(argc, argv, "--dim", 128);
  const int64_t E = arg(argc, argv, "--experts", 16), k = arg(argc, argv, "--k", 2);
  const int64_t hidden = arg(argc, argv, "--hidden", 128);
  const int reps = static_cast<int>(arg(argc, argv, "--reps", 30));
  Generator gen(1);
  InitOptions opt{DType::Float32, &gen};
  MoEConfig c;
  c.dim = d, c.hidden = hidden, c.experts = E, c.k = k;
  MoELayer topk_layer(c, opt);
  c.use_ac = true;
  MoELayer ac_layer(c, opt);
  c.ac.differentiable = true;
  MoELayer ac_diff_layer(c, opt);

  Tensor x = Tensor::randn({n, d}, 0, 1, DType::Float32, &gen);
  x.requires_grad_();
  // the previous layer's assignments: route once with the top-k layer
  Assignments prev;
  {
    NoGradGuard g;
    prev = topk_layer.forward(x).assignments;
  }
  auto step = [&](MoELayer& layer, const Assignments& p) {
    return [&layer, &x, p] {
      MoEOutput o = layer.forward(x, p);
      add(sum(o.y), mul(o.balance_loss, 0.01)).backward();
      layer.zero_grad();
      x.zero_grad();
    };
  };
  const double t_topk = median_ms(reps, step(topk_layer, {}));
  const double t_ac = median_ms(reps, step(ac_layer, prev));
  const double t_ac_diff = median_ms(reps, step(ac_diff_layer, prev));
  Tensor labels = contiguous(squeeze(narrow(prev.indices, 1, 0, 1), 1));
  const double t_weights = median_ms(reps, [&] {
    Tensor W;
    {
      NoGradGuard g;
      W = ac_cluster_weights(x.detach(), labels, E, ACOptions());
    }
    sum(ac_scale_gather(x, W, labels)).backward();
    x.zero_grad();
  });

  std::printf("MoE layer forward+backward, n=%ld d=%ld E=%ld k=%ld hidden=%ld, float32, median of %d\n", (long)n,
              (long)d, (long)E, (long)k, (long)hidden, reps);
  std::printf("  top-k router layer            %8.2f ms\n", t_topk);
  std::printf("  AC router layer (detached)    %8.2f ms   AC adds %+5.1f%%\n", t_ac, 100 * (t_ac - t_topk) / t_topk);
  std::printf("  AC router layer (differentiable) %5.2f ms   AC adds %+5.1f%%\n", t_ac_diff,
              100 * (t_ac_diff - t_topk) / t_topk);
  std::printf("  AC weighting alone (W, x*W[c]; fwd+bwd) %.2f ms = %.1f%% of the AC layer\n", t_weights,
              100 * t_weights / t_ac);
  return 0;
}
