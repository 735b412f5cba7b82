// CUDA kernels behind nn/attention.cpp's masked_softmax and elliptical_metric
// (attention.cu), on contiguous float32/float64 tensors of one CUDA device.
// Deterministic: each row is reduced by one block with the fixed-order
// block_max / block_sum of launch.cuh (softmax), or each sum over tokens by
// one thread in token order (metric); no atomics. Plain C++: nn/attention.cpp
// includes it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// y = masked_softmax(x) over rows of length ns; row r is query r % nt of a
// [nt, ns] block. x, y: [rows · ns] contiguous, one dtype and device.
void cuda_masked_softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t nt, int64_t ns, bool causal);
// dx = y ⊙ (dy − Σ dy ⊙ y) over each row's kept entries, 0 at masked ones.
void cuda_masked_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t nt,
                                  int64_t ns, bool causal);
// m = elliptical_metric(v, v_prev, causal) for contiguous v, v_prev viewed as
// [nb, nt, nd] (nb = samples · heads, nt >= 1); m is [nb, causal ? nt : 1, nd].
void cuda_elliptical_metric(const Tensor& v, const Tensor& v_prev, const Tensor& m, int64_t nb, int64_t nt,
                            int64_t nd, bool causal);

}  // namespace moegrad
