// The matmul op on CUDA tensors (cuBLAS through cuda_gemm) against the CPU op:
// 2-d, 1-d promotion, batched with broadcast batch dims (flattened into one
// stride, and the case that needs a copy), transposed views; the gradients
// of both operands; a gradcheck on the device in float64. Tolerances: those
// of tests/test_cuda_gemm.cpp (float64 1e-12, float32 1e-4).
#include "test_cuda_helpers.h"

#ifdef MOEGRAD_WITH_CUDA
using namespace moegrad;
using namespace moegrad::testing;

namespace {

Tol mm_tol(DType dtype) { return dtype == DType::Float64 ? Tol{1e-12, 1e-12} : Tol{1e-4, 1e-4}; }

// (a shape, b shape): every path of matmul_nd
const std::vector<std::pair<Shape, Shape>> kShapes = {
    {{5, 7}, {7, 3}},          {{7}, {7, 3}},          {{5, 7}, {7}},           {{2, 3, 5, 7}, {7, 4}},
    {{4, 5, 7}, {4, 7, 3}},    {{4, 5, 7}, {7, 3}},    {{1, 5, 7}, {4, 7, 3}},  {{2, 1, 5, 7}, {1, 3, 7, 2}},
    {{3, 2, 5, 7}, {2, 7, 6}}, {{6, 1, 1}, {6, 1, 9}}};

}  // namespace

TEST(CudaMatmul, ForwardAndGradientsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const auto& [sa, sb] : kShapes) {
      Tensor a = uniform(sa, dtype, 1, -1, 1).requires_grad_(), b = uniform(sb, dtype, 2, -1, 1).requires_grad_();
      Tensor da = on_cuda(a.detach()).requires_grad_(), db = on_cuda(b.detach()).requires_grad_();
      Tensor y = matmul(a, b), dy = matmul(da, db);
      const std::string what = shape_str(sa) + " x " + shape_str(sb);
      expect_close(dy, y, mm_tol(dtype), what);
      Tensor w = uniform(y.shape(), dtype, 3);
      sum(mul(y, w)).backward();
      sum(mul(dy, on_cuda(w))).backward();
      expect_close(da.grad(), a.grad(), mm_tol(dtype), what + " da");
      expect_close(db.grad(), b.grad(), mm_tol(dtype), what + " db");
    }
}

TEST(CudaMatmul, TransposedViewsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor a = uniform({3, 8, 5}, DType::Float64, 4), b = uniform({3, 6, 8}, DType::Float64, 5);
  expect_close(matmul(transpose(on_cuda(a), 1, 2), transpose(on_cuda(b), 1, 2)),
               matmul(transpose(a, 1, 2), transpose(b, 1, 2)), mm_tol(DType::Float64));
}

TEST(CudaMatmul, GradcheckOnDevice) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor a = on_cuda(uniform({2, 3, 4}, DType::Float64, 6)).requires_grad_();
  Tensor b = on_cuda(uniform({4, 2}, DType::Float64, 7)).requires_grad_();
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return matmul(in[0], in[1]); }, {a, b});
}

TEST(CudaMatmul, MixedDevicesAreAnError) {
  MG_SKIP_WITHOUT_CUDA();
  EXPECT_MG_ERROR(matmul(on_cuda(uniform({2, 3}, DType::Float32, 8)), uniform({3, 2}, DType::Float32, 9)),
                  "devices differ");
}
#endif
