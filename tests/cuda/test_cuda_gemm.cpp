// cuda_gemm (cuda/gemm.h) against the CPU matmul: row- and column-major
// (transposed) operands, degenerate sizes, beta accumulation, batches with a
// broadcast operand, output with a row stride, k = 0, the TF32 switch, and
// its errors. Tolerances: float64 1e-12 relative (atol 1e-12: sums of up to
// 256 products in another order); float32 1e-4 relative and absolute with
// TF32 off, 1e-2 with it on (10-bit mantissa inputs).
#include "test_cuda_helpers.h"

#ifdef MOEGRAD_WITH_CUDA
#include "cuda/gemm.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

// a [m, k] stored as itself or as the transpose of a contiguous [k, m]
Tensor operand(int64_t rows, int64_t cols, bool transposed, DType dtype, uint64_t seed) {
  if (!transposed) return uniform({rows, cols}, dtype, seed, -1, 1);
  return transpose(uniform({cols, rows}, dtype, seed, -1, 1), 0, 1);
}

}  // namespace

TEST(CudaGemm, MatchesCpuMatmulForEveryLayout) {
  MG_SKIP_WITHOUT_CUDA();
  const std::vector<std::array<int64_t, 3>> sizes = {{1, 1, 1}, {5, 7, 3}, {64, 33, 17}, {1, 9, 4},
                                                     {6, 9, 1}, {7, 1, 5}, {128, 256, 64}};
  for (DType dtype : {DType::Float64, DType::Float32})
    for (auto [m, k, n] : sizes)
      for (int layout = 0; layout < 4; ++layout) {
        const bool ta = layout & 1, tb = layout & 2;
        Tensor a = operand(m, k, ta, dtype, 10 + m), b = operand(k, n, tb, dtype, 20 + n);
        Tensor c = Tensor::empty({m, n}, dtype, Device::cuda(0));
        // device operands keep the layout: transpose on the device
        Tensor da = ta ? transpose(on_cuda(contiguous(transpose(a, 0, 1))), 0, 1) : on_cuda(a);
        Tensor db = tb ? transpose(on_cuda(contiguous(transpose(b, 0, 1))), 0, 1) : on_cuda(b);
        cuda_gemm(da, db, c);
        expect_close(c, matmul(a, b), gemm_tol(dtype),
                     std::string(dtype_name(dtype)) + " m" + std::to_string(m) + " k" + std::to_string(k) + " n" +
                         std::to_string(n) + " layout " + std::to_string(layout));
      }
}

TEST(CudaGemm, AlphaBetaAccumulate) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    Tensor a = uniform({9, 6}, dtype, 1, -1, 1), b = uniform({6, 4}, dtype, 2, -1, 1), c0 = uniform({9, 4}, dtype, 3);
    Tensor c = on_cuda(c0);
    cuda_gemm(on_cuda(a), on_cuda(b), c, 2.0, 0.5);
    expect_close(c, add(mul(matmul(a, b), 2.0), mul(c0, 0.5)), gemm_tol(dtype), dtype_name(dtype));
    // beta 0 ignores what c held, NaN included
    Tensor nan_c = Tensor::full({9, 4}, NAN, dtype, Device::cuda(0));
    cuda_gemm(on_cuda(a), on_cuda(b), nan_c);
    expect_close(nan_c, matmul(a, b), gemm_tol(dtype), "beta 0");
  }
}

TEST(CudaGemm, BatchedWithBroadcastOperand) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    Tensor a = uniform({4, 5, 6}, dtype, 4, -1, 1), b = uniform({4, 6, 3}, dtype, 5, -1, 1);
    Tensor c = Tensor::empty({4, 5, 3}, dtype, Device::cuda(0));
    cuda_gemm(on_cuda(a), on_cuda(b), c);
    expect_close(c, matmul(a, b), gemm_tol(dtype), "batched");
    // one b for every batch: size-1 batch dim, or expanded with stride 0
    Tensor b1 = uniform({1, 6, 3}, dtype, 6, -1, 1);
    Tensor want = matmul(a, expand(b1, {4, 6, 3}));
    cuda_gemm(on_cuda(a), on_cuda(b1), c);
    expect_close(c, want, gemm_tol(dtype), "b batch 1");
    cuda_gemm(on_cuda(a), expand(on_cuda(b1), {4, 6, 3}), c);
    expect_close(c, want, gemm_tol(dtype), "b expanded");
    // transposed batched operand: aᵀ per batch
    Tensor at = uniform({4, 6, 5}, dtype, 7, -1, 1);
    cuda_gemm(transpose(on_cuda(at), 1, 2), on_cuda(b), c);
    expect_close(c, matmul(transpose(at, 1, 2), b), gemm_tol(dtype), "a transposed per batch");
  }
}

TEST(CudaGemm, OutputWithRowStrideLeavesTheRestAlone) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor a = uniform({5, 4}, DType::Float64, 8), b = uniform({4, 3}, DType::Float64, 9);
  Tensor wide = Tensor::full({5, 7}, -9.0, DType::Float64, Device::cuda(0));
  cuda_gemm(on_cuda(a), on_cuda(b), narrow(wide, 1, 2, 3));
  expect_close(narrow(wide, 1, 2, 3), matmul(a, b), gemm_tol(DType::Float64));
  for (double v : narrow(wide, 1, 0, 2).to_vector()) EXPECT_EQ(v, -9.0);
  for (double v : narrow(wide, 1, 5, 2).to_vector()) EXPECT_EQ(v, -9.0);
}

TEST(CudaGemm, EmptySums) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor a = Tensor::zeros({3, 0}, DType::Float64, Device::cuda(0)), b = Tensor::zeros({0, 2}, DType::Float64,
                                                                                        Device::cuda(0));
  Tensor c = Tensor::full({3, 2}, 5.0, DType::Float64, Device::cuda(0));
  cuda_gemm(a, b, c, 1.0, 2.0);
  EXPECT_EQ(c.to_vector(), std::vector<double>(6, 10.0));
  cuda_gemm(a, b, c);
  EXPECT_EQ(c.to_vector(), std::vector<double>(6, 0.0));
  Tensor none = Tensor::empty({0, 2}, DType::Float64, Device::cuda(0));
  cuda_gemm(Tensor::zeros({0, 4}, DType::Float64, Device::cuda(0)), on_cuda(Tensor::zeros({4, 2}, DType::Float64)),
            none);  // m = 0: nothing to do
}

TEST(CudaGemm, Tf32IsOffByDefaultAndCanBeTurnedOn) {
  MG_SKIP_WITHOUT_CUDA();
  EXPECT_FALSE(cuda_allow_tf32());
  Tensor a = uniform({64, 128}, DType::Float32, 11, -1, 1), b = uniform({128, 32}, DType::Float32, 12, -1, 1);
  Tensor c = Tensor::empty({64, 32}, DType::Float32, Device::cuda(0));
  cuda_set_allow_tf32(true);
  EXPECT_TRUE(cuda_allow_tf32());
  cuda_gemm(on_cuda(a), on_cuda(b), c);
  cuda_set_allow_tf32(false);
  expect_close(c, matmul(a, b), Tol{1e-2, 1e-2}, "tf32");
  cuda_gemm(on_cuda(a), on_cuda(b), c);
  expect_close(c, matmul(a, b), gemm_tol(DType::Float32), "fp32 again");
}

TEST(CudaGemm, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor a = Tensor::zeros({4, 3}, DType::Float32, Device::cuda(0)), b = Tensor::zeros({3, 2}, DType::Float32,
                                                                                        Device::cuda(0));
  Tensor c = Tensor::zeros({4, 2}, DType::Float32, Device::cuda(0));
  EXPECT_MG_ERROR(cuda_gemm(a.to(Device::cpu()), b, c), "cuda_gemm: devices differ");
  EXPECT_MG_ERROR(cuda_gemm(a, b, c.to(Device::cpu())), "cuda_gemm: c is on cpu");
  EXPECT_MG_ERROR(cuda_gemm(a.to(DType::Float64), b, c), "all float32 or all float64");
  EXPECT_MG_ERROR(cuda_gemm(a.to(DType::Int64), b.to(DType::Int64), c.to(DType::Int64)), "all float32");
  EXPECT_MG_ERROR(cuda_gemm(a, Tensor::zeros({4, 2}, DType::Float32, Device::cuda(0)), c), "shapes do not match");
  EXPECT_MG_ERROR(cuda_gemm(reshape(a, {12}), b, c), "all 2-d or all 3-d");
  Tensor big = Tensor::zeros({8, 6}, DType::Float32, Device::cuda(0));
  EXPECT_MG_ERROR(cuda_gemm(slice(slice(big, 0, 0, 8, 2), 1, 0, 6, 2), b, c), "neither row- nor column-major");
  Tensor ct = Tensor::zeros({2, 4}, DType::Float32, Device::cuda(0));
  EXPECT_MG_ERROR(cuda_gemm(a, b, transpose(ct, 0, 1)), "unit stride in its last dim");
  EXPECT_MG_ERROR(cuda_gemm(unsqueeze(a, 0), unsqueeze(b, 0), expand(unsqueeze(c, 0), {3, 4, 2})),
                  "batch dim has stride 0");
}

#else

TEST(CudaGemm, NotBuilt) { MG_SKIP_WITHOUT_CUDA(); }

#endif
