// cuBLAS GEMM for row-major tensors on one CUDA device:
//   c = alpha · a·b + beta · c
// with a [m, k], b [k, n], c [m, n] (2-d), or batched a [B, m, k], b [B, k, n],
// c [B, m, n] (3-d; a or b may have batch stride 0 to broadcast one matrix).
// Each matrix of a and b may be row-major or column-major (unit stride in one
// of its two dims, so a transposed view costs no copy); c must have unit
// stride in its last dim. float32 or float64, all three of one dtype on one
// device. Sizes must fit cuBLAS's int. Anything else is an Error naming
// cuda_gemm. No declarations here need CUDA headers.
//
// float32 products use plain FP32 unless TF32 tensor-core math is turned on
// (off by default: TF32 rounds inputs to a 10-bit mantissa).
#pragma once
#include "tensor/tensor.h"

namespace moegrad {

void cuda_gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha = 1.0, double beta = 0.0);

void cuda_set_allow_tf32(bool allow);
bool cuda_allow_tf32();

}  // namespace moegrad
