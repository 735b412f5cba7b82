// The CUDA kernel behind autograd/ops/topk.cpp (topk.cu): the sorted top k of
// each row, with the CPU's order (more extreme first, ties to the lower
// index, NaN above every number). One block per row picks the k entries one
// at a time: each round every thread finds the best of its strided share
// among the entries after the last pick (in that total order), and a block
// reduction keeps the best of those. Selection under a total order has one
// answer, so the result equals the CPU's exactly and is deterministic. Work
// per row is O(k n / threads); rows are short in MoE routing (16-64 experts).
// Plain C++: the op includes it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// values/indices (contiguous [rows, k], x's dtype / int64) = the top k of each
// row of x (contiguous [rows, n], float32 or float64, on CUDA); 1 <= k <= n.
void cuda_topk_rows(const Tensor& x, int64_t rows, int64_t n, int64_t k, bool largest, const Tensor& values,
                    const Tensor& indices);

}  // namespace moegrad
