// Elementwise CUDA kernels behind autograd/ops/binary.cpp and unary.cpp
// (pointwise.cu): inputs of any layout on one CUDA device (broadcast for the
// binary ops), float32 or float64, results new contiguous tensors. Each output
// element is computed by one thread from its inputs alone, so every kernel
// here is deterministic. Plain C++: the ops include it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// The constants of the two GELU forms, shared with the CPU kernels.
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
constexpr double kGeluC = 0.044715;

enum class CudaBinaryOp : uint8_t { Add, Sub, Mul, Div };

// Pow: x^p. Affine: p·x + q. Reciprocal: p / x. GeluErf and GeluTanh are the
// two forms of GELU in unary.cpp.
enum class CudaUnaryOp : uint8_t {
  Neg, Exp, Log, Sqrt, Pow, Abs, Relu, Tanh, Sigmoid, GeluErf, GeluTanh, Affine, Reciprocal
};

// out = a op b over `shape` (the broadcast of both shapes); a and b of one dtype.
Tensor cuda_binary(CudaBinaryOp op, const Tensor& a, const Tensor& b, const Shape& shape);
// y = f(x) with the parameters p, q above.
Tensor cuda_unary(CudaUnaryOp op, const Tensor& x, double p = 0, double q = 0);
// dx = dy · f'(x), where f' may read the forward's output y (x's shape); dy is
// broadcast to x's shape. Not for Affine and Reciprocal (binary.cpp composes
// their backward from other ops).
Tensor cuda_unary_backward(CudaUnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y, double p = 0);
// acc += alpha · x in place, x (acc's dtype) broadcast to acc's shape.
void cuda_add_(const Tensor& acc, const Tensor& x, double alpha);

}  // namespace moegrad
