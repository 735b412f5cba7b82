// The dropout mask kernel of dropout.h: element i keeps when
// dropout_keeps(seed, first + i, p), exactly as autograd/ops/dropout.cpp does
// on the CPU (the draw is __host__ __device__ and uses only integer
// arithmetic and one exact scaling, so both sides draw the same doubles).
#include "cuda/dropout.h"
#include "cuda/launch.cuh"
#include "tensor/random.h"

namespace moegrad {

namespace {

template <typename T>
__global__ void dropout_mask_kernel(T* mask, int64_t n, uint64_t seed, uint64_t first, double p, T scale) {
  MG_GRID_STRIDE(i, n) mask[i] = dropout_keeps(seed, first + static_cast<uint64_t>(i), p) ? scale : T(0);
}

}  // namespace

void cuda_dropout_mask(const Tensor& mask, uint64_t seed, uint64_t first, double p, double scale) {
  MG_CHECK(mask.is_contiguous(), "dropout: the mask must be contiguous");
  const int64_t n = mask.numel();
  if (n == 0) return;
  cuda::DeviceGuard guard(mask.device().index);
  dispatch_float(mask.dtype(), "dropout", [&](auto tag) {
    using T = typename decltype(tag)::type;
    dropout_mask_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(mask.data<T>(), n, seed, first, p,
                                                                  static_cast<T>(scale));
  });
  cuda::check_launch("dropout_mask_kernel");
}

}  // namespace moegrad
