// The Soft MoE kernel of soft_moe.h: integer division of the chosen slots by
// the slots per expert, one thread per element.
#include "cuda/launch.cuh"
#include "cuda/soft_moe.h"

namespace moegrad {

namespace {

__global__ void slot_experts(const int64_t* slots, int64_t count, int64_t p, int64_t* experts) {
  MG_GRID_STRIDE(i, count) experts[i] = slots[i] / p;
}

}  // namespace

Tensor cuda_slot_experts(const Tensor& slots_in, int64_t p) {
  MG_CHECK(slots_in.defined() && slots_in.device().is_cuda() && slots_in.dtype() == DType::Int64,
           "SoftMoE: the chosen slots must be an int64 tensor on a CUDA device");
  MG_CHECK(p > 0, "SoftMoE: slots per expert must be positive, got ", p);
  Tensor slots = slots_in;
  if (!slots.is_contiguous()) {
    slots = Tensor::empty(slots_in.shape(), DType::Int64, slots_in.device());
    slots.copy_(slots_in);
  }
  Tensor experts = Tensor::empty(slots.shape(), DType::Int64, slots.device());
  const int64_t count = slots.numel();
  if (count == 0) return experts;
  cuda::DeviceGuard guard(slots.device().index);
  slot_experts<<<cuda::grid_for(count), cuda::kThreads>>>(slots.data<int64_t>(), count, p, experts.data<int64_t>());
  cuda::check_launch("slot_experts");
  return experts;
}

}  // namespace moegrad
