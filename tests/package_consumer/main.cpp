// Uses the installed moegrad: gradient-checks a tiny function of two tensors
// and exits non-zero if the check fails.
#include <cstdio>

#include "moegrad.h"

int main() {
  using namespace moegrad;
  Generator gen(7);
  Tensor x = Tensor::randn({3, 4}, 0.0, 1.0, DType::Float64, &gen).requires_grad_();
  Tensor w = Tensor::randn({4, 2}, 0.0, 1.0, DType::Float64, &gen).requires_grad_();
  GradcheckResult r = gradcheck(
      [](const std::vector<Tensor>& in) { return sum(tanh(matmul(in[0], in[1])) * 2.0 + in[0].dim()); }, {x, w});
  std::printf("consumer: %s\n", r.message.c_str());
  return r.ok ? 0 : 1;
}
