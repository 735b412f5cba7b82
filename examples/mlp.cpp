// examples/mlp: trains a 2-layer MLP (2 -> 64 tanh -> 1) with Adam on a
// generated regression problem, y = sin(3 x1) cos(2 x2) + noise, and checks
// that the held-out mean squared error reaches a stated target (exit code 1
// otherwise). It also measures, over the steady training steps after a
// warm-up, how many tensor buffers the caching allocator had to get from the
// system per step (the goal, checked: 0) and how many times the global
// operator new ran per step (graph nodes, shapes, closures: reported only).
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <new>

#include "moegrad.h"
#include "nn/optim.h"

using namespace moegrad;

// ---- every global operator new in this program is counted ----
static std::atomic<int64_t> g_operator_new_calls{0};

void* operator new(std::size_t n) {
  g_operator_new_calls.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return ::operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace {

constexpr int64_t kTrain = 4096, kTest = 1024, kHidden = 64, kBatch = 128;
constexpr int kSteps = 3000, kWarmup = 100, kPrintEvery = 250;
constexpr double kNoise = 0.05;    // so the best reachable MSE is about kNoise^2 = 0.0025
constexpr double kTarget = 0.006;  // held-out MSE to reach

struct Data {
  Tensor x, y;  // [n, 2], [n, 1] float32
};

// n samples with x uniform in [-1, 1]^2, in random order (so consecutive
// slices are random minibatches).
Data make_data(int64_t n, Generator& gen) {
  Data d{Tensor::rand({n, 2}, -1.0, 1.0, DType::Float32, &gen),
         Tensor::randn({n, 1}, 0.0, kNoise, DType::Float32, &gen)};
  const float* x = d.x.data<float>();
  float* y = d.y.data<float>();
  for (int64_t i = 0; i < n; ++i) y[i] += std::sin(3 * x[2 * i]) * std::cos(2 * x[2 * i + 1]);
  return d;
}

struct Mlp {
  Tensor w1, b1, w2, b2;
  explicit Mlp(Generator& gen)
      : w1(Tensor::randn({2, kHidden}, 0.0, 1.0, DType::Float32, &gen)),  // inputs have variance 1/3
        b1(Tensor::zeros({kHidden})),
        w2(Tensor::randn({kHidden, 1}, 0.0, 1.0 / std::sqrt(double(kHidden)), DType::Float32, &gen)),
        b2(Tensor::zeros({1})) {
    for (Tensor* p : {&w1, &b1, &w2, &b2}) p->requires_grad_();
  }
  std::vector<Tensor> params() const { return {w1, b1, w2, b2}; }
  Tensor operator()(const Tensor& x) const { return matmul(tanh(matmul(x, w1) + b1), w2) + b2; }
};

Tensor mse(const Tensor& pred, const Tensor& y) {
  Tensor d = pred - y;
  return mean(d * d);
}

}  // namespace

int main() {
  Generator gen(2024);
  Data train = make_data(kTrain, gen), test = make_data(kTest, gen);
  Mlp net(gen);
  Adam opt(net.params(), AdamOptions{3e-3});

  std::printf("mlp: 2 -> %lld tanh -> 1, %lld training samples, batch %lld, Adam lr %g, %d steps\n",
              (long long)kHidden, (long long)kTrain, (long long)kBatch, opt.lr(), kSteps);
  Allocator& alloc = allocator_for(DeviceType::CPU);
  int64_t system_allocs_at_warmup = 0, operator_news_at_warmup = 0;
  double window_loss = 0;
  for (int step = 1; step <= kSteps; ++step) {
    if (step == kWarmup + 1) {
      system_allocs_at_warmup = alloc.stats().system_allocs;
      operator_news_at_warmup = g_operator_new_calls.load();
    }
    const int64_t start = (step - 1) * kBatch % kTrain;
    Tensor loss = mse(net(narrow(train.x, 0, start, kBatch)), narrow(train.y, 0, start, kBatch));
    opt.zero_grad();
    loss.backward();
    opt.step();
    window_loss += loss.item();
    if (step % kPrintEvery == 0) {
      std::printf("step %5d  train loss %.5f\n", step, window_loss / kPrintEvery);
      window_loss = 0;
    }
  }
  const double steady = kSteps - kWarmup;
  const double system_allocs = (alloc.stats().system_allocs - system_allocs_at_warmup) / steady;
  const double operator_news = (g_operator_new_calls.load() - operator_news_at_warmup) / steady;

  double test_mse;
  {
    NoGradGuard no_grad;
    test_mse = mse(net(test.x), test.y).item();
  }
  std::printf("per steady step (after %d warm-up steps): %.2f tensor-buffer system allocations (goal 0), "
              "%.1f global operator new calls\n",
              kWarmup, system_allocs, operator_news);
  const bool reached = test_mse < kTarget;
  std::printf("held-out MSE: reached %.4f, target < %.3f (noise floor %.4f): %s\n", test_mse, kTarget,
              kNoise * kNoise, reached ? "ok" : "NOT REACHED");
  if (system_allocs > 0) std::printf("FAILED: the steady training step allocated from the system\n");
  return reached && system_allocs == 0 ? 0 : 1;
}
