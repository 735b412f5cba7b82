// Elementwise CUDA kernels behind autograd/ops/binary.cpp and unary.cpp
// (pointwise.cu): inputs of any layout on one CUDA device (broadcast for the
// binary ops), float32 or float64, results new contiguous tensors. Each output
// element is computed by one thread from its inputs alone, so every kernel
// here is deterministic. Plain C++: the ops include it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/elementwise.h"
#include "tensor/tensor.h"

namespace moegrad {

// out = a op b over `shape` (the broadcast of both shapes); a and b of one dtype.
Tensor cuda_binary(BinaryOp op, const Tensor& a, const Tensor& b, const Shape& shape);
// y = f(x) with the parameters p, q of tensor/elementwise.h.
Tensor cuda_unary(UnaryOp op, const Tensor& x, double p = 0, double q = 0);
// dx = dy · f'(x), where f' may read the forward's output y (x's shape); dy is
// broadcast to x's shape. Not for Affine and Reciprocal (binary.cpp composes
// their backward from other ops).
Tensor cuda_unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y, double p = 0);
// acc += alpha · x in place, x (acc's dtype) broadcast to acc's shape.
void cuda_add_(const Tensor& acc, const Tensor& x, double alpha);

}  // namespace moegrad
