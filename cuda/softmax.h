// Row kernels behind autograd/ops/softmax.cpp and loss.cpp (softmax.cu):
// softmax / log_softmax over the rows of a contiguous [rows, n] tensor, their
// backward, and cross_entropy's target check, forward and backward. Tensors
// are contiguous, float32/float64 (targets int64), on one CUDA device; the ops
// bring them into that form. Each row is reduced by one block in a fixed tree
// (block_max / block_sum of cuda/launch.cuh), the loss is a fixed-order sum
// (cuda/reduce.h), no atomics: every result is deterministic. Plain C++: the
// ops include it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// y = softmax (or log_softmax when log) of each row of x [rows, n].
void cuda_softmax_forward(const Tensor& x, const Tensor& y, int64_t rows, int64_t n, bool log);
// dx from the forward's y and the upstream dy, row by row:
//   softmax: dx = y (dy - Σ dy·y)      log_softmax: dx = dy - exp(y) Σ dy
void cuda_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t n, bool log);

// What cross_entropy checks before computing: how many targets are not
// ignore_index, and the first position whose target is neither ignore_index
// nor in [0, C) (-1 when there is none), with that target. loss.cpp fills it
// on the CPU too, so both devices report a bad target with one message.
struct TargetCheck {
  int64_t count = 0, first_bad = -1, bad_value = 0;
};
// targets int64 [N] on a CUDA device; computed there and read back in one copy.
TargetCheck cuda_check_targets(const Tensor& targets, int64_t C, int64_t ignore_index);

// x [N, C], targets [N] already checked (count = TargetCheck::count). Fills
// lse [N] (0 for ignored rows) and returns the 0-d loss: the mean over
// non-ignored rows of lse_i - x[i, t_i], 0 when every row is ignored.
Tensor cuda_cross_entropy_forward(const Tensor& x, const Tensor& targets, int64_t ignore_index, int64_t count,
                                  const Tensor& lse);
// dx [N, C] = (exp(x - lse_i) - [j == t_i]) · dout / count, zero rows for
// ignored targets; dout is the 0-d upstream gradient on the device.
Tensor cuda_cross_entropy_backward(const Tensor& x, const Tensor& lse, const Tensor& targets, int64_t ignore_index,
                                   int64_t count, const Tensor& dout);

}  // namespace moegrad
