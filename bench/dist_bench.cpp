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
// line: the mode, the ranks, OpenMP's threads, the global tokens per second
// at the median step, and rank 0's time inside the communicator at the
// median step (the all-to-alls and the all-reduce, each including the wait
// for the slowest rank) beside the rest (compute).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "bench/bench_util.h"
#include "dist/data_parallel.h"
#include "moe/moe_layer.h"
#include "nn/optim.h"

using namespace moegrad;

namespace {
// A communicator that passes every call to another and adds up the time spent in it.
class TimedCommunicator : public dist::Communicator {
 public:
  explicit TimedCommunicator(dist::CommPtr inner) : inner_(std::move(inner)) {}
  double ms = 0;  // since the last reset

  int rank() const override { return inner_->rank(); }
  int world_size() const override { return inner_->world_size(); }
  void all_reduce_sum(const std::vector<Tensor>& tensors) override {
    timed([&] { inner_->all_reduce_sum(tensors); });
  }
  void broadcast(const std::vector<Tensor>& tensors, int root) override {
    timed([&] { inner_->broadcast(tensors, root); });
  }
  std::vector<int64_t> all_to_all_counts(const std::vector<int64_t>& send) override {
    std::vector<int64_t> recv;
    timed([&] { recv = inner_->all_to_all_counts(send); });
    return recv;
  }
  Tensor all_to_all(const Tensor& rows, const std::vector<int64_t>& send, const std::vector<int64_t>& recv) override {
    Tensor out;
    timed([&] { out = inner_->all_to_all(rows, send, recv); });
    return out;
  }
  void barrier() override { timed([&] { inner_->barrier(); }); }
  void abort_all(int status) override { inner_->abort_all(status); }

 private:
  template <typename F>
  void timed(F&& f) {
    const auto start = std::chrono::steady_clock::now();
    f();
    ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  }
  dist::CommPtr inner_;
};
}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string mode = bench::flag(argc, argv, "--mode", "single");
    const int64_t tokens = bench::flag_int(argc, argv, "--tokens", 4096), steps = bench::flag_int(argc, argv, "--steps", 20);
    MoEConfig c;
    c.dim = bench::flag_int(argc, argv, "--dim", 128), c.experts = bench::flag_int(argc, argv, "--experts", 16);
    c.hidden = bench::flag_int(argc, argv, "--hidden", 128), c.k = bench::flag_int(argc, argv, "--k", 2);
    MG_CHECK(mode == "single" || mode == "data" || mode == "expert", "dist_bench: --mode must be single | data | ",
             "expert, got '", mode, "'");
    auto comm = std::make_shared<TimedCommunicator>(dist::world());
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
    std::vector<double> comm_ms;  // per step, untimed ones included
    const bench::Timing t = bench::time_runs(3, static_cast<int>(steps), 1, [&] {
      comm->ms = 0;
      adam.zero_grad();
      MoEOutput out = layer.forward(x);
      (mean(mul(out.y, out.y)) + out.balance_loss * 0.01).backward();
      dist::average_gradients(*comm, shared);
      adam.step();
      comm_ms.push_back(comm->ms);
    });
    // the median step's communication (the timed steps are the last ones)
    const double median = t.median();
    const size_t timed_from = comm_ms.size() - t.ms.size();
    const size_t median_step = std::find(t.ms.begin(), t.ms.end(), median) - t.ms.begin();
    const double communication = comm_ms[timed_from + median_step];
    if (comm->rank() == 0)
      std::printf("mode %s, %d rank(s) x %d thread(s): %.0f tokens/s (median step %.1f ms: %.1f ms communication, "
                  "%.1f ms compute; %lld tokens)\n",
                  mode.c_str(), comm->world_size(), omp_get_max_threads(), tokens / (median / 1000.0), median,
                  communication, median - communication, static_cast<long long>(tokens));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
