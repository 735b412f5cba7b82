// gradcheck: compares the hand-written backward of any function of tensors
// with central finite differences in float64.
//
//   auto r = gradcheck([](const std::vector<Tensor>& in) { return my_op(in[0], in[1]); },
//                      {x, w});   // float64 leaves; those with requires_grad are checked
//   if (!r.ok) std::cerr << r.message;
//
// A non-scalar output is reduced to L = sum(out * R) with a fixed random R, so
// every output element is exercised. For each element x_j of each checked
// input, numeric = (L(x_j + eps) - L(x_j - eps)) / (2 eps); the element passes
// when |analytic - numeric| <= atol + rtol * |numeric|. The function must be
// deterministic (pass a fixed Generator to dropout inside it). Inputs may live
// on a CUDA device: their elements are then perturbed one at a time in place
// on the device, and R is copied to the output's device.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace moegrad {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-4;
  uint64_t seed = 1234;  // for the projection R
};

struct GradcheckResult {
  bool ok = true;
  std::string message;  // on failure: the worst element and how many failed
  int input = -1;       // worst element: which input
  Shape index;          // its index within that input
  double analytic = 0, numeric = 0, error = 0;  // error = |a - n| / max(|n|, 1e-12)
  int64_t checked = 0, failed = 0;
  explicit operator bool() const { return ok; }
};

using TensorFunction = std::function<Tensor(const std::vector<Tensor>&)>;

GradcheckResult gradcheck(const TensorFunction& f, const std::vector<Tensor>& inputs,
                          const GradcheckOptions& options = GradcheckOptions());

}  // namespace moegrad
