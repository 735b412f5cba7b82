// The one Soft MoE step on a CUDA device that no op gives (soft_moe.cu): the
// expert (slot / p) of each chosen slot, for the assignments the layer hands
// on to the next AC layer. One thread per element, so deterministic. Plain
// C++: callers include it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// slots: int64 on a CUDA device (any layout), p > 0. A new contiguous int64
// tensor of slots' shape on its device with slots[i] / p.
Tensor cuda_slot_experts(const Tensor& slots, int64_t p);

}  // namespace moegrad
