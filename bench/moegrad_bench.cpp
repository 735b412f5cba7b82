// moegrad's side of the PyTorch comparison (bench/compare.py runs it beside
// bench/torch_peer.py, which implements the same cases). One case per run;
// prints one JSON line (bench/bench_util.h): the median of --reps timed runs
// after --warmup, throughput at the median, and the peak resident memory
// above the process's size before the case built anything.
//
//   moegrad_bench train_step [--router smoe|acmoe] [--batch 8] [--seq 256] [--dim 128] [--heads 8]
//                            [--experts 16] [--k 2] [--hidden 128] [--moe-layers 4]
//   moegrad_bench ac_overhead [the flags of train_step but --router]
//   moegrad_bench moe_layer  [--tokens 2048] [--dim 128] [--experts 16] [--k 2] [--hidden 128]
//   moegrad_bench ac_router  [--tokens 2048] [--dim 128] [--experts 16] [--k 2]
//   moegrad_bench gemm       [--size 512]
//   moegrad_bench attention  [--batch 8] [--seq 256] [--dim 128] [--heads 8] [--dropout-pct 0]
// Every case also takes --threads (default 2), --warmup (3), --reps (7), --inner (1:
// calls per timed run; the time reported is per call) and --device cpu|cuda
// (cuda: the model and data on GPU 0, each timed run ends by waiting for the
// device, and the peak is the CUDA allocator's instead of the resident set).
// train_step also reports its model FLOPs per step (model_gflop: 2 per
// multiply-add of the matrix products, backward twice the forward), from
// which compare.py gives the fraction of the GPU's peak.
//
// train_step: a Switch-style byte LM, attention and MoE sublayers alternating
// (smoe "sgsg...", acmoe "sgsc...": AC on every MoE layer after the first),
// forward, cross-entropy + 0.01 balance loss, backward, Adam. ac_overhead:
// the smoe and the acmoe step alternating in one process, their medians and
// the AC router's share (the noise of two processes is larger). moe_layer: one
// top-k MoE layer forward+backward. ac_router: the AC router alone (W from
// the previous layer's labels, x ⊙ W[c], gate, top-k, softmax, balance loss)
// forward+backward. gemm: float32 A·B, square. attention: causal multi-head
// self-attention (qkv and output projections included) forward+backward,
// with --dropout-pct P dropout of P% on the probabilities (training mode).
#include <omp.h>

#include <string>

#include "bench/bench_util.h"
#include "autograd/node.h"
#include "tensor/allocator.h"
#include "tensor/backend.h"
#include "moe/transformer_lm.h"
#include "nn/optim.h"

using namespace moegrad;

namespace {

Device parse_device(const std::string& name) {
  MG_CHECK(name == "cpu" || name == "cuda", "--device must be cpu or cuda, got ", name);
  if (name == "cpu") return Device::cpu();
  MG_CHECK(cuda_backend() != nullptr, "--device cuda: this build has no CUDA backend");
  MG_CHECK(cuda_device_count() > 0, "--device cuda: no CUDA device is visible");
  return Device::cuda(0);
}

// Peak memory of a case: the resident set on the CPU (bench_util.h), the CUDA
// allocator's peak of bytes in use above the start on a GPU.
class CasePeak {
 public:
  explicit CasePeak(Device device) : device_(device) {
    if (device_.is_cuda()) {
      allocator_for(DeviceType::CUDA).reset_peak();
      start_ = allocator_for(DeviceType::CUDA).stats().bytes_in_use;
    }
  }
  double mib() const {
    if (!device_.is_cuda()) return host_.mib();
    return double(allocator_for(DeviceType::CUDA).stats().peak_bytes_in_use - start_) / (1 << 20);
  }

 private:
  Device device_;
  bench::PeakMemory host_;
  int64_t start_ = 0;
};

// The flags, and the timing and report of one case.
struct Bench {
  int argc;
  char** argv;
  Device device;
  CasePeak mem;
  Bench(int c, char** v) : argc(c), argv(v), device(parse_device(str("--device", "cpu"))), mem(device) {}
  long get(const char* name, long fallback) const { return bench::flag_int(argc, argv, name, fallback); }
  std::string str(const char* name, const char* fallback) const { return bench::flag(argc, argv, name, fallback); }
  // Waits for the device's queued work (a GPU step is timed to its end).
  void sync() const {
    if (device.is_cuda()) cuda_backend()->synchronize(device);
  }
  template <typename F>
  bench::Timing time(int warmup, int reps, int inner, F&& step) {
    auto synced = [&] { step(), sync(); };
    return bench::time_runs(warmup, reps, inner, synced);
  }
  template <typename F>
  int run(const std::string& name, double items, const char* unit, F&& step) {
    bench::Timing t = time(static_cast<int>(get("--warmup", 3)), static_cast<int>(get("--reps", 7)),
                           static_cast<int>(get("--inner", 1)), step);
    bench::print_result("moegrad", name, t, items, unit, mem.mib());
    return 0;
  }
};

// The parameters of a model after moving it to `device` (for an optimizer
// built in a member initialiser).
template <typename M>
std::vector<Tensor> parameters_on(M& model, Device device) {
  model.to(device);
  return model.parameters();
}

// One training step of the byte LM of train_step, ready to repeat.
struct LMStep {
  TransformerLM model;
  Adam opt;
  Tensor ids, targets;
  LMStep(const LMConfig& mc, long B, Generator& gen, Device device)
      : model(mc, InitOptions{DType::Float32, &gen}), opt(parameters_on(model, device), AdamOptions{1e-3}) {
    ids = Tensor::rand({B, mc.max_len}, 0, 256, DType::Float32, &gen).to(DType::Int64).to(device);
    targets = Tensor::rand({B, mc.max_len}, 0, 256, DType::Float32, &gen).to(DType::Int64).to(device);
  }
  void operator()() {
    opt.zero_grad();
    LMOutput o = model.forward(ids, targets);
    add(o.loss, mul(o.balance_loss, 0.01)).backward();
    opt.step();
  }
};

LMConfig lm_config(const Bench& b, const std::string& router) {
  MG_CHECK(router == "smoe" || router == "acmoe", "--router must be smoe or acmoe, got ", router);
  LMConfig mc;
  mc.vocab = 256, mc.max_len = b.get("--seq", 256);
  mc.arch = "sg";
  for (long i = 1; i < b.get("--moe-layers", 4); ++i) mc.arch += router == "acmoe" ? "sc" : "sg";
  mc.block.dim = b.get("--dim", 128), mc.block.heads = b.get("--heads", 8);
  mc.block.moe.hidden = b.get("--hidden", 128), mc.block.moe.experts = b.get("--experts", 16);
  mc.block.moe.k = b.get("--k", 2);
  return mc;
}

// Multiply-adds of one forward pass per token of the byte LM: qkv and output
// projections and the causal scores and values (T/2 keys on average) per
// attention layer; gate and k experts (two matrices each) per MoE layer; the
// output head.
double lm_forward_macs_per_token(const LMConfig& mc) {
  const double d = double(mc.block.dim), T = double(mc.max_len), h = double(mc.block.moe.hidden);
  const double E = double(mc.block.moe.experts), k = double(mc.block.moe.k);
  double macs = d * double(mc.vocab);
  for (char c : mc.arch) macs += c == 's' ? 4 * d * d + T * d : c == 'g' || c == 'c' ? d * E + k * 2 * d * h : 0;
  return macs;
}

int train_step(Bench& b, Generator& gen) {
  const std::string router = b.str("--router", "smoe");
  const long B = b.get("--batch", 8);
  const LMConfig mc = lm_config(b, router);
  LMStep step(mc, B, gen, b.device);
  const double tokens = double(B * mc.max_len);
  bench::Timing t = b.time(static_cast<int>(b.get("--warmup", 3)), static_cast<int>(b.get("--reps", 7)),
                           static_cast<int>(b.get("--inner", 1)), step);
  // forward, then backward at twice its cost; 2 FLOPs per multiply-add
  bench::print_result("moegrad", "train_step/" + router, t, tokens, "tokens/s", b.mem.mib(),
                      3 * 2 * lm_forward_macs_per_token(mc) * tokens / 1e9);
  return 0;
}

// The AC router's cost in the training step, measured in one process: the
// smoe and the acmoe model step in turn, so both see the same machine state.
int ac_overhead(Bench& b) {
  const long B = b.get("--batch", 8);
  // The same seed gives both the same weights and data (AC adds no parameters).
  Generator gen_s(0), gen_a(0);
  LMStep smoe(lm_config(b, "smoe"), B, gen_s, b.device), acmoe(lm_config(b, "acmoe"), B, gen_a, b.device);
  const int warmup = static_cast<int>(b.get("--warmup", 3)), reps = static_cast<int>(b.get("--reps", 7));
  for (int i = 0; i < warmup; ++i) smoe(), acmoe();
  bench::Timing ts, ta;
  for (int i = 0; i < reps; ++i) {
    ts.ms.push_back(b.time(0, 1, 1, smoe).ms[0]);
    ta.ms.push_back(b.time(0, 1, 1, acmoe).ms[0]);
  }
  std::printf("{\"impl\": \"moegrad\", \"case\": \"ac_overhead\", \"smoe_ms\": %.4f, \"acmoe_ms\": %.4f, "
              "\"overhead_pct\": %.2f, \"median_ms\": %.4f, \"per_s\": %.6g, \"unit\": \"tokens/s\", \"peak_mib\": %.1f}\n",
              ts.median(), ta.median(), 100 * (ta.median() - ts.median()) / ts.median(), ta.median(),
              B * smoe.model.config.max_len / (ta.median() / 1000), b.mem.mib());
  return 0;
}

MoEConfig moe_config(const Bench& b) {
  MoEConfig mc;
  mc.dim = b.get("--dim", 128), mc.hidden = b.get("--hidden", 128), mc.experts = b.get("--experts", 16);
  mc.k = b.get("--k", 2);
  return mc;
}

int moe_layer(Bench& b, Generator& gen) {
  const long n = b.get("--tokens", 2048);
  MoELayer layer(moe_config(b), InitOptions{DType::Float32, &gen});
  layer.to(b.device);
  Tensor x = Tensor::randn({n, layer.config.dim}, 0, 1, DType::Float32, &gen).to(b.device).requires_grad_();
  return b.run("moe_layer/n=" + std::to_string(n), double(n), "tokens/s", [&] {
    layer.zero_grad(), x.zero_grad();
    MoEOutput o = layer.forward(x);
    add(sum(o.y), mul(o.balance_loss, 0.01)).backward();
  });
}

int ac_router(Bench& b, Generator& gen) {
  const long n = b.get("--tokens", 2048);
  const MoEConfig mc = moe_config(b);
  ACRouter router(RouterConfig{mc.dim, mc.experts, mc.k, GateKind::Linear}, ACConfig{},
                  InitOptions{DType::Float32, &gen});
  router.to(b.device);
  Tensor x = Tensor::randn({n, mc.dim}, 0, 1, DType::Float32, &gen).to(b.device).requires_grad_();
  // The previous layer's assignments: the top-k of random logits.
  TopK prev = topk(Tensor::randn({n, mc.experts}, 0, 1, DType::Float32, &gen).to(b.device), mc.k, -1);
  return b.run("ac_router/n=" + std::to_string(n), double(n), "tokens/s", [&] {
    router.zero_grad(), x.zero_grad();
    RouterOutput o = router.forward(x, Assignments{prev.indices, prev.values});
    add(sum(o.scores), mul(o.balance_loss, 0.01)).backward();
  });
}

int gemm(Bench& b, Generator& gen) {
  const long n = b.get("--size", 512);
  Tensor A = Tensor::randn({n, n}, 0, 1, DType::Float32, &gen).to(b.device);
  Tensor B = Tensor::randn({n, n}, 0, 1, DType::Float32, &gen).to(b.device);
  return b.run("gemm/n=" + std::to_string(n), 2.0 * n * n * n / 1e9, "GFLOP/s", [&] { matmul(A, B); });
}

int attention(Bench& b, Generator& gen) {
  const long B = b.get("--batch", 8), T = b.get("--seq", 256), d = b.get("--dim", 128), H = b.get("--heads", 8);
  const long drop_pct = b.get("--dropout-pct", 0);  // dropout on the probabilities, in percent
  MultiHeadAttention attn(d, H, /*causal=*/true, double(drop_pct) / 100, InitOptions{DType::Float32, &gen});
  attn.to(b.device);
  Tensor x = Tensor::randn({B, T, d}, 0, 1, DType::Float32, &gen).to(b.device).requires_grad_();
  std::string name = "attention/B=" + std::to_string(B) + ",T=" + std::to_string(T);
  if (drop_pct) name += ",dropout=" + std::to_string(drop_pct) + "%";
  return b.run(name, double(B * T), "tokens/s", [&] {
    attn.zero_grad(), x.zero_grad();
    sum(attn.forward(x).y).backward();
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: moegrad_bench train_step|ac_overhead|moe_layer|ac_router|gemm|attention [flags]\n");
    return 2;
  }
  try {
    Bench b(argc, argv);
    omp_set_num_threads(static_cast<int>(b.get("--threads", 2)));
    Generator gen(0);
    const std::string c = argv[1];
    if (c == "train_step") return train_step(b, gen);
    if (c == "ac_overhead") return ac_overhead(b);
    if (c == "moe_layer") return moe_layer(b, gen);
    if (c == "ac_router") return ac_router(b, gen);
    if (c == "gemm") return gemm(b, gen);
    if (c == "attention") return attention(b, gen);
    std::fprintf(stderr, "moegrad_bench: unknown case '%s'\n", c.c_str());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moegrad_bench: %s\n", e.what());
    return 1;
  }
}
