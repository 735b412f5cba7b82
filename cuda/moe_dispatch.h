// CUDA kernels behind moe/dispatch.cpp (moe_dispatch.cu): the scatter that
// turns the counting-sorted slots into a routing plan, and the row gathers and
// sums of moe_permute and moe_combine with their backward. Inputs are
// contiguous tensors of one CUDA device (float32 or float64 data, int64 maps);
// the callers in dispatch.cpp validate shapes and make operands contiguous.
// Deterministic: every output element is written by one thread, which sums
// its terms in a fixed order (the choices j = 0..k-1 of a token); no atomics.
// The expert GEMMs themselves go through cuda/gemm.h. Plain C++ header.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// The plan from the slots sorted by expert. keys [k * tokens] holds the expert
// of slot (i, j) at j * tokens + i (the CPU's order: top-1 choices first, each
// choice in token order); order [k * tokens] is the stable sort of those
// positions by key and sorted_offsets [E + 1] its bucket starts; kept_offsets
// [E + 1] are the row offsets after the capacity (0: none). Writes position
// [tokens * k] (row of slot i * k + j, or -1 when its rank in its expert
// reaches the capacity), row_token and row_slot [rows].
void cuda_plan_scatter(const Tensor& keys, const Tensor& order, const Tensor& sorted_offsets,
                       const Tensor& kept_offsets, int64_t tokens, int64_t k, int64_t capacity,
                       const Tensor& position, const Tensor& row_token, const Tensor& row_slot);

// xp [rows, d] = x [tokens, d] rows picked by row_token [rows].
void cuda_permute_rows(const Tensor& x, const Tensor& row_token, const Tensor& xp);
// dx [tokens, d]: dx[i] = Σ_j dxp[position[i, j]] over the kept slots of i (position [tokens, k]).
void cuda_permute_rows_backward(const Tensor& dxp, const Tensor& position, int64_t k, const Tensor& dx);

// y [tokens, d]: y[i] = Σ_j scores[i, j] · yp[position[i, j]] over the kept slots.
void cuda_combine_rows(const Tensor& yp, const Tensor& scores, const Tensor& position, const Tensor& y);
// dyp [rows, d]: dyp[position[i, j]] = scores[i, j] · dy[i]; dscores [tokens, k]:
// <dy[i], yp[position[i, j]]> (accumulated in double), 0 for a dropped slot.
void cuda_combine_rows_backward(const Tensor& dy, const Tensor& yp, const Tensor& scores, const Tensor& position,
                                const Tensor& dyp, const Tensor& dscores);

}  // namespace moegrad
