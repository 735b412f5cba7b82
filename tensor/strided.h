// Strided iteration: visits every element of an n-d shape for a few operands
// that each have their own strides (a broadcast dimension has stride 0), one
// innermost row at a time, in parallel over rows. Elementwise kernels use it
// for non-contiguous or broadcast inputs; contiguous inputs take a flat loop.
#pragma once
#include <array>
#include <cstdint>

#include "tensor/error.h"
#include "tensor/parallel.h"

namespace moegrad {

// Strides of `t_shape` seen as broadcast to `out_shape` (right-aligned; size-1
// or missing dimensions get stride 0).
Shape broadcast_strides(const Shape& t_shape, const Shape& t_strides, const Shape& out_shape);

// Calls row(offsets, n, inner_strides) for every innermost row of `shape`,
// where offsets[k] is operand k's element offset at the row start.
template <size_t N, typename Row>
void strided_rows(const Shape& shape, const std::array<const Shape*, N>& strides, Row&& row) {
  const int64_t ndim = static_cast<int64_t>(shape.size());
  if (ndim == 0) {
    std::array<int64_t, N> off{}, inner{};
    row(off, int64_t{1}, inner);
    return;
  }
  const int64_t inner_n = shape[ndim - 1];
  int64_t rows = 1;
  for (int64_t d = 0; d + 1 < ndim; ++d) rows *= shape[d];
  if (rows == 0 || inner_n == 0) return;
  std::array<int64_t, N> inner{};
  for (size_t k = 0; k < N; ++k) inner[k] = (*strides[k])[ndim - 1];
  parallel_for(rows, grain_for(inner_n),
               [&](int64_t begin, int64_t end) {
    // multi-index of row `begin` over the outer dims
    int64_t idx[16] = {0};
    int64_t r = begin;
    for (int64_t d = ndim - 2; d >= 0; --d) {
      idx[d] = r % shape[d];
      r /= shape[d];
    }
    std::array<int64_t, N> off{};
    for (size_t k = 0; k < N; ++k)
      for (int64_t d = 0; d + 1 < ndim; ++d) off[k] += idx[d] * (*strides[k])[d];
    for (int64_t i = begin; i < end; ++i) {
      row(off, inner_n, inner);
      for (int64_t d = ndim - 2; d >= 0; --d) {  // increment the multi-index
        ++idx[d];
        for (size_t k = 0; k < N; ++k) off[k] += (*strides[k])[d];
        if (idx[d] < shape[d]) break;
        for (size_t k = 0; k < N; ++k) off[k] -= shape[d] * (*strides[k])[d];
        idx[d] = 0;
      }
    }
  });
}

constexpr int64_t kMaxDims = 16;

}  // namespace moegrad
