// CUDA kernels behind autograd/ops/index.cpp (index.cu): the bounds check of
// an index tensor, row selection and row accumulation along one dim
// (index_select, index_add, embedding and their backward), gather and
// scatter_add (gather's and topk's backward). float32/float64 data, int64
// indices, all on one CUDA device; callers validate shapes and bounds first.
// Deterministic, no atomics on data: each output element (or each line of
// scatter_add) is written by one thread, and the sums add their sources in
// the CPU's order (index order), starting from the output's old value, so
// results equal the CPU's bit for bit. Plain C++: ops include it without
// CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// The first position (row-major) of idx (int64, contiguous, on CUDA) whose
// value lies outside [0, n), or -1 when all are in range. Waits for the device
// (one read back of 8 bytes).
int64_t cuda_first_out_of_range(const Tensor& idx, int64_t n);

// out[o, i, j] = x[o, idx[i], j] for x contiguous [outer, n, inner], idx
// contiguous [m] in range, out contiguous [outer, m, inner] (any shape with
// that many elements).
void cuda_select_rows(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& idx,
                      const Tensor& out);

// out[o, idx[i], j] += src[o, i, j], i in increasing order, for out contiguous
// [outer, n, inner], src contiguous [outer, m, inner], idx contiguous [m] in
// range. The indices are first grouped by destination row with the stable
// counting sort of cuda/sort.h, then each output element sums its sources;
// when n * ceil(m / 256) is too large for the sort's tables, each (o, j)
// column walks all m indices instead (one thread per column).
void cuda_add_rows(const Tensor& out, int64_t outer, int64_t n, int64_t inner, const Tensor& idx,
                   const Tensor& src);

// out[p] = x[p with coordinate d replaced by index[p]], out contiguous of
// index's shape; x and index of any layout, index in range.
void cuda_gather(const Tensor& x, int64_t d, const Tensor& index, const Tensor& out);

// out[p with coordinate d replaced by index[p]] += src[p] for every p in
// index's shape; out contiguous, src and index of any layout, index in range.
// One thread per line along d (all other coordinates fixed) adds the line's
// sources in order; distinct lines write distinct elements of out.
void cuda_scatter_add(const Tensor& out, int64_t d, const Tensor& index, const Tensor& src);

}  // namespace moegrad
