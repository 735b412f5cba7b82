// Reduction kernels behind autograd/ops/reduce.cpp (reduce.cu), on contiguous
// float32/float64 tensors of one CUDA device. Sums accumulate in double and
// every output is reduced in an order fixed by the shape alone (no atomics),
// so all of them are deterministic; the order differs from the CPU's, so
// results agree with it to rounding, not bit for bit. max is exact.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// out[r] = Σ_i x[r, i] for x [rows, n].
void cuda_sum_rows(const Tensor& x, int64_t rows, int64_t n, const Tensor& out);
// out[j] = Σ_i x[i, j] for x [n, cols].
void cuda_sum_columns(const Tensor& x, int64_t n, int64_t cols, const Tensor& out);
// out[r] = max_i x[r, i], arg[r] (int64) = the first position of the maximum;
// a NaN counts as larger than any number, as on the CPU. n > 0.
void cuda_max_rows(const Tensor& x, int64_t rows, int64_t n, const Tensor& out, const Tensor& arg);
// g[r, arg[r]] = d[r] for g [rows, n] (its other elements are left as they are).
void cuda_scatter_rows(const Tensor& d, const Tensor& arg, int64_t rows, int64_t n, const Tensor& g);

}  // namespace moegrad
