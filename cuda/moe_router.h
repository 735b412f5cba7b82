// CUDA kernels behind the routers in moe/router.cpp (moe_router.cu): the
// fused top-k + softmax over the expert logits, the row softmax of short rows
// (the scores' backward and the AC mixing weights), and the Switch balance
// loss and router z-loss with their backward. Operands are contiguous tensors
// of one CUDA device, float32 or float64 (indices int64); router.cpp validates
// shapes and makes them contiguous. Deterministic: one thread per token (or
// per output element) in a fixed order, and the two losses sum their
// per-token terms in double in one block with a fixed-order block_sum; no
// atomics. Plain C++ header.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// For logits [n, E]: values, indices [n, k] the k largest per row, sorted,
// ties to the lower index and NaN above every number (as the CPU's topk), and
// scores [n, k] the softmax of those values (as the CPU's softmax).
void cuda_router_topk(const Tensor& logits, int64_t k, const Tensor& values, const Tensor& indices,
                      const Tensor& scores);
// dlogits [n, E]: dvalues [n, k] at indices [n, k], zero elsewhere.
void cuda_router_topk_backward(const Tensor& dvalues, const Tensor& indices, const Tensor& dlogits);

// y = softmax of each row of x [n, m] (one thread per row: for short rows).
void cuda_row_softmax(const Tensor& x, const Tensor& y);
// dx = y (dy - Σ dy y) per row.
void cuda_row_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx);

// loss (one element, logits' dtype) = E · Σ_e f_e P_e, with f_e = (offsets[e+1] -
// offsets[e]) / slots (the share of slots routed to e; offsets [E + 1], int64)
// and P_e the mean over the n tokens of softmax(logits)[:, e].
void cuda_balance_loss(const Tensor& logits, const Tensor& offsets, int64_t slots, const Tensor& loss);
// dlogits = dloss · (E / n) · p_ic (f_c - Σ_e f_e p_ie); dloss: one element on the device.
void cuda_balance_loss_backward(const Tensor& logits, const Tensor& offsets, int64_t slots, const Tensor& dloss,
                                const Tensor& dlogits);

// loss = mean over rows of logsumexp(logits)²; lse (float64 [n]) gets each row's logsumexp.
void cuda_z_loss(const Tensor& logits, const Tensor& lse, const Tensor& loss);
// dlogits = dloss · (2 / n) · lse_i · softmax(logits)_ic.
void cuda_z_loss_backward(const Tensor& logits, const Tensor& lse, const Tensor& dloss, const Tensor& dlogits);

}  // namespace moegrad
