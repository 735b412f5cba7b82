// The CUDA kernel behind autograd/ops/dropout.cpp (dropout.cu): the mask,
// drawn from the same counter-based stream as the CPU kernel
// (tensor/random.h), so for one Generator state the device mask equals the
// CPU mask bit for bit. One thread per element, no shared state: deterministic.
// Plain C++: the op includes it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// mask[i] = scale if random_uniform(seed, first + i) >= p, else 0, for every
// element i of mask (contiguous, float32 or float64, on a CUDA device).
void cuda_dropout_mask(const Tensor& mask, uint64_t seed, uint64_t first, double p, double scale);

}  // namespace moegrad
