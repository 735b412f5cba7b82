// CUDA kernels behind autograd/ops/compare.cpp and select.cpp (select.cu):
// the comparisons (bool results), masked_fill, where and clamp with its
// backward. Inputs of any layout (broadcast where the op broadcasts) on one
// CUDA device; results are new contiguous tensors. Each output element is
// computed by one thread from its inputs alone, with the CPU's arithmetic
// (scalar comparisons in double, fill values and bounds saturated to the
// dtype), so results equal the CPU's exactly and every kernel is
// deterministic. Plain C++: the ops include it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/elementwise.h"
#include "tensor/tensor.h"

namespace moegrad {

// out (bool, `shape`) = a op b, a and b of one dtype (float32, float64 or
// int64) broadcast to shape.
Tensor cuda_compare(CompareOp op, const Tensor& a, const Tensor& b, const Shape& shape);
// out (bool, a's shape) = double(a) op s.
Tensor cuda_compare_scalar(CompareOp op, const Tensor& a, double s);
// out = mask ? value : x, mask (bool) broadcast to x's shape; value is
// converted with saturate_cast to x's dtype.
Tensor cuda_masked_fill(const Tensor& x, const Tensor& mask, double value);
// out (`shape`) = cond ? a : b, all three broadcast to shape; a and b of one dtype.
Tensor cuda_where(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& shape);
// out = min(max(x, low), high) with low, high saturated to x's dtype.
Tensor cuda_clamp(const Tensor& x, double low, double high);
// dx (x's shape) = dout where low <= x <= high, else 0; dout broadcast to x's shape.
Tensor cuda_clamp_backward(const Tensor& dout, const Tensor& x, double low, double high);

}  // namespace moegrad
