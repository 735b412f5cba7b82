// Shared validation and shape helpers for the op implementations.
#pragma once
#include <string>

#include "autograd/node.h"
#include "autograd/ops.h"

namespace moegrad {

// Wraps a possibly negative dim into [0, ndim); Error naming op otherwise.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// NumPy broadcast of two shapes; Error naming op and both shapes otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Error unless t is defined, on the CPU, and float32/float64. Ops without CUDA
// kernels call this, so a CUDA tensor gets an Error naming the op.
void check_float(const Tensor& t, const char* op, const char* what = "input");
// check_float for the ops that have CUDA kernels: also accepts a CUDA tensor.
void check_float_any_device(const Tensor& t, const char* op, const char* what = "input");
// Error unless a and b have the same dtype and device.
void check_same_type(const Tensor& a, const Tensor& b, const char* op);
// Error unless t is an int64 tensor.
void check_index(const Tensor& t, const char* op, const char* what = "index");

}  // namespace moegrad
