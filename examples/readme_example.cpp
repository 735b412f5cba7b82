// The example program shown in README.md, compiled and run by ctest so that
// the README cannot go stale: keep the two identical. It builds a small net,
// gradient-checks it, runs one backward, and defines and checks its own op.
#include <cstdio>

#include "moegrad.h"

using namespace moegrad;

// Your own op: the forward from existing ops without recording a graph, the
// backward written by hand. d softplus(x) / dx = sigmoid(x).
Tensor softplus(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = log(exp(x) + 1.0);
  }
  Tensor saved = x.detach();
  attach_backward(out, "softplus", {x}, [saved](const Tensor& dout) {
    return std::vector<Tensor>{dout * sigmoid(saved)};
  });
  return out;
}

int main() {
  Generator gen(0);
  Tensor x = Tensor::randn({4, 3}, 0.0, 1.0, DType::Float64, &gen);
  Tensor w1 = Tensor::randn({3, 8}, 0.0, 0.5, DType::Float64, &gen).requires_grad_();
  Tensor b1 = Tensor::zeros({8}, DType::Float64).requires_grad_();
  Tensor w2 = Tensor::randn({8, 1}, 0.0, 0.5, DType::Float64, &gen).requires_grad_();

  // A 2-layer net with a GELU hidden layer, as a function of its inputs.
  auto net = [](const std::vector<Tensor>& in) { return matmul(gelu(matmul(in[0], in[1]) + in[2]), in[3]); };

  // gradcheck compares the hand-written backward of every op in the net with
  // central finite differences, for every input that requires grad.
  GradcheckResult r = gradcheck(net, {x, w1, b1, w2});
  std::printf("net:      %s\n", r.message.c_str());

  // Ordinary use: backward() fills the leaves' grad().
  Tensor loss = mean(net({x, w1, b1, w2}));
  loss.backward();
  std::printf("loss %.6f, dloss/db1[0] = %.6f\n", loss.item(), b1.grad().at({0}));

  // The same check for your own op, composed with others.
  GradcheckResult s = gradcheck([](const std::vector<Tensor>& in) { return softplus(matmul(in[0], in[1])); }, {w1, w2});
  std::printf("softplus: %s\n", s.message.c_str());
  return r.ok && s.ok ? 0 : 1;
}
