// CUDA kernels behind nn/fused_attention.cpp (flash_attention.cu):
// softmax(scale · q kᵀ, causal mask) v without the [T, S] score matrix, and
// its backward from the saved log-sum-exp. Operands are strided rows in
// place (the packed qkv projection included), float32 or float64, all on one
// CUDA device. Deterministic: every output element is accumulated by one
// thread in a fixed order (dQ over key tiles, dK and dV over query tiles, in
// ascending order); no atomics. Plain C++: no CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// The widest head the kernels take (their tiles of q, k, v rows live in
// shared memory).
constexpr int64_t kCudaAttentionMaxHeadDim = 128;

struct CudaAttentionDims {
  int64_t nb, nh, nt, ns, dh;  // samples, heads, queries, keys, head width
  bool causal;                 // key s is masked for query t when s > t + (S - T)
  double scale;
  // Dropout on the probabilities when drop_p > 0: key s of query t in head bh
  // is kept when dropout_keeps(drop_seed, drop_first + (bh·T + t)·S + s, p)
  // and then weighs 1/(1-p), as in nn/fused_attention.cpp.
  double drop_p = 0;
  uint64_t drop_seed = 0, drop_first = 0;
};

// Row r of head (b, h) of a logical [B, H, rows, Dh] operand starts at element
// offset + b·batch + h·head + r·row of tensor's data; its Dh elements are
// adjacent.
struct CudaAttentionRows {
  Tensor tensor;
  int64_t offset, batch, head, row;
};

// out = attention(q, k, v) and lse [B·H·T] (contiguous, the dtype of q) = each
// query row's log-sum-exp of its scaled scores. A query that sees no key
// (causal with S < T, which fused_attention rejects) gets out 0 and lse −inf.
// Error when Dh exceeds kCudaAttentionMaxHeadDim.
void cuda_flash_attention(const CudaAttentionDims& d, const CudaAttentionRows& q, const CudaAttentionRows& k,
                          const CudaAttentionRows& v, const CudaAttentionRows& out, const Tensor& lse);
// dq, dk, dv from the forward's operands, its out and lse, and dout (laid out
// as out). Every row of dq, dk, dv is written (keys no query sees get 0).
void cuda_flash_attention_backward(const CudaAttentionDims& d, const CudaAttentionRows& q, const CudaAttentionRows& k,
                                   const CudaAttentionRows& v, const CudaAttentionRows& out, const Tensor& lse,
                                   const CudaAttentionRows& dout, const CudaAttentionRows& dq,
                                   const CudaAttentionRows& dk, const CudaAttentionRows& dv);

}  // namespace moegrad
