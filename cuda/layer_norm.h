// Kernels behind autograd/ops/layer_norm.cpp (layer_norm.cu): layer norm over
// the rows of a contiguous [rows, D] tensor, the same formulas as the CPU
// kernels there. Tensors are contiguous, float32/float64, on one CUDA device;
// weight, bias, dweight and dbias may be undefined (weight 1, bias 0, gradient
// not wanted). Deterministic: a row is reduced by one block in a fixed tree
// (block_sum), dweight and dbias are column sums over fixed chunks of rows
// added in chunk order; no atomics. Plain C++: the op includes it without
// CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// y = (x - mean) * rstd * weight + bias per row; saves mean and rstd [rows].
void cuda_layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y,
                             const Tensor& mean, const Tensor& rstd, int64_t rows, int64_t D, double eps);
// dx = (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd, dnorm = dy * weight.
void cuda_layer_norm_backward_dx(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                 const Tensor& dy, const Tensor& dx, int64_t rows, int64_t D);
// dweight = Σ over rows of dy * norm, dbias = Σ over rows of dy.
void cuda_layer_norm_backward_params(const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                                     const Tensor& dweight, const Tensor& dbias, int64_t rows, int64_t D);

}  // namespace moegrad
