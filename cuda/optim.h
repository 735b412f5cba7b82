// CUDA kernels behind nn/optim.cpp and the gradient clipping of the example
// trainers (optim.cu): the fused SGD and Adam/AdamW updates of one contiguous
// parameter, and the global L2 norm of a list of gradients. float32/float64,
// every tensor on the parameter's CUDA device. Each update element is computed
// by one thread from its own inputs, with the CPU loop's formula, each
// operation rounded once (no fused multiply-adds), so the updates are
// deterministic and agree with the CPU to rounding (bit for bit where the host
// compiler did not contract the CPU loop into FMAs, as -march=native may);
// the norm reduces in a fixed order (see cuda_global_norm). Plain C++:
// nn/ includes it without CUDA headers.
#pragma once
#include <vector>

#include "tensor/tensor.h"

namespace moegrad {

// SGD::update: d = g + wd * w; with buf: buf = first ? d : mom * buf + d, d = buf; w -= lr * d.
// buf is undefined without momentum. w, g, buf contiguous, of w's dtype.
void cuda_sgd_update(const Tensor& w, const Tensor& g, const Tensor& buf, double lr, double wd, double mom,
                     bool first);

// Adam::update: gi = g + l2 * w; m = b1 m + (1 - b1) gi; v = b2 v + (1 - b2) gi^2;
// w = keep * w - step_size * m / (sqrt(v) * inv_sqrt_bias2 + eps).
struct CudaAdamStep {
  double b1, b2, eps, l2, keep, step_size, inv_sqrt_bias2;
};
void cuda_adam_update(const Tensor& w, const Tensor& g, const Tensor& m, const Tensor& v, const CudaAdamStep& s);

// sqrt(Σ over all tensors and elements of x²), accumulated in double, read
// back to the host once. All tensors contiguous float32/float64 on one CUDA
// device (any mix of the two dtypes); the list may be empty (0).
double cuda_global_norm(const std::vector<Tensor>& tensors);

}  // namespace moegrad
