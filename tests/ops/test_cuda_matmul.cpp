// The matmul op on CUDA tensors: operands on different devices are an error.
// Its forward and both operands' gradients against the CPU (2-d, 1-d
// promotion, batched with broadcast batch dims, transposed views) and its
// float64 gradcheck on the device: the op table, tests/ops/op_table.cpp.
#include "test_cuda_helpers.h"

#ifdef MOEGRAD_WITH_CUDA

using namespace moegrad;
using namespace moegrad::testing;

TEST(CudaMatmul, MixedDevicesAreAnError) {
  MG_SKIP_WITHOUT_CUDA();
  EXPECT_MG_ERROR(matmul(on_cuda(uniform({2, 3}, DType::Float32, 8)), uniform({3, 2}, DType::Float32, 9)),
                  "devices differ");
}

#endif
