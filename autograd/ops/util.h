// Shared validation and shape helpers for the op implementations.
#pragma once
#include <string>

#include "autograd/node.h"
#include "autograd/ops.h"
#include "tensor/backend.h"

namespace moegrad {

// Wraps a possibly negative dim into [0, ndim); Error naming op otherwise.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
// NumPy broadcast of two shapes; Error naming op and both shapes otherwise.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Error unless t is defined and float32/float64, on any device (every op has
// CPU and CUDA kernels; check_same_type or the op checks that devices agree).
void check_float(const Tensor& t, const char* op, const char* what = "input");
// Error unless a and b have the same dtype and device.
void check_same_type(const Tensor& a, const Tensor& b, const char* op);
// Error unless t is a defined int64 tensor on `device` (that of the tensor it
// indexes): "<op>: <what> is on cpu, expected cuda:0".
void check_index(const Tensor& t, Device device, const char* op, const char* what = "index");
// The first dimension along which t's elements share memory (stride 0 and
// size > 1: an expanded view), or -1; an empty tensor has none.
int64_t expanded_dim(const Tensor& t);

}  // namespace moegrad
