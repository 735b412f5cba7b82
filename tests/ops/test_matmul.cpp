// matmul: 2-d, batched with broadcast batch dims, 1-d promotion, transposed
// and sliced operands (mapped without copies), float32 vs float64, the thread
// count left alone, and errors (gradient checks: the op table,
// tests/ops/op_table.cpp).
#ifdef _OPENMP
#include <omp.h>
#endif

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;
using moegrad::testing::leaf;

// Naive C = A B for 2-d tensors of any layout.
static std::vector<double> naive_mm(const Tensor& a, const Tensor& b) {
  std::vector<double> c;
  for (int64_t i = 0; i < a.size(0); ++i)
    for (int64_t j = 0; j < b.size(1); ++j) {
      double s = 0;
      for (int64_t k = 0; k < a.size(1); ++k) s += a.at({i, k}) * b.at({k, j});
      c.push_back(s);
    }
  return c;
}

TEST(Matmul, Values2dAllLayouts) {
  Tensor a = Tensor::randn({5, 7}, 0, 1, DType::Float64), b = Tensor::randn({7, 3}, 0, 1, DType::Float64);
  Tensor at = contiguous(transpose(a, 0, 1)), bt = contiguous(transpose(b, 0, 1));
  std::vector<double> ref = naive_mm(a, b);
  expect_near(matmul(a, b).to_vector(), ref, 1e-12);
  expect_near(matmul(transpose(at, 0, 1), b).to_vector(), ref, 1e-12);
  expect_near(matmul(a, transpose(bt, 0, 1)).to_vector(), ref, 1e-12);
  expect_near(matmul(transpose(at, 0, 1), transpose(bt, 0, 1)).to_vector(), ref, 1e-12);
  // a strided slice (not mappable) is copied first
  Tensor wide = Tensor::randn({5, 14}, 0, 1, DType::Float64);
  expect_near(matmul(slice(wide, 1, 0, 14, 2), b).to_vector(), naive_mm(slice(wide, 1, 0, 14, 2), b), 1e-12);
  // float32
  expect_near(matmul(a.to(DType::Float32), b.to(DType::Float32)).to_vector(), ref, 1e-5);
}

TEST(Matmul, BatchedAndBroadcast) {
  Tensor a = Tensor::randn({2, 3, 4, 5}, 0, 1, DType::Float64);
  Tensor b = Tensor::randn({3, 5, 2}, 0, 1, DType::Float64);
  Tensor c = matmul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 3, 4, 2}));
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j) {
      Tensor ai = squeeze(narrow(squeeze(narrow(a, 0, i, 1), 0), 0, j, 1), 0);
      Tensor bj = squeeze(narrow(b, 0, j, 1), 0);
      Tensor cij = squeeze(narrow(squeeze(narrow(c, 0, i, 1), 0), 0, j, 1), 0);
      expect_near(cij.to_vector(), naive_mm(ai, bj), 1e-12);
    }
  // [..., m, k] x [k, n]: one GEMM over collapsed rows
  Tensor w = Tensor::randn({5, 6}, 0, 1, DType::Float64);
  Tensor y = matmul(a, w);
  EXPECT_EQ(y.shape(), (Shape{2, 3, 4, 6}));
  expect_near(reshape(y, {24, 6}).to_vector(), naive_mm(reshape(a, {24, 5}), w), 1e-12);
}

TEST(Matmul, OneDimensionalOperands) {
  Tensor v = Tensor::from_vector({1, 2}, {2}, DType::Float64);
  Tensor m = Tensor::from_vector({1, 2, 3, 4}, {2, 2}, DType::Float64);
  EXPECT_EQ(matmul(v, m).to_vector(), (std::vector<double>{7, 10}));
  EXPECT_EQ(matmul(m, v).to_vector(), (std::vector<double>{5, 11}));
  EXPECT_EQ(matmul(v, v).shape(), Shape{});
  EXPECT_EQ(matmul(v, v).item(), 5.0);
}

#ifdef _OPENMP
// A product on the calling thread, the first of the process under ctest (one
// process per test), keeps OpenMP's thread count: the BLAS library's own
// thread setting must not leak into moegrad's parallel regions.
TEST(Matmul, LeavesTheThreadCountAlone) {
  const int threads = omp_get_max_threads();
  omp_set_num_threads(3);
  Tensor c = matmul(leaf({2, 2}, 35), leaf({2, 2}, 36));
  EXPECT_EQ(omp_get_max_threads(), 3);
  omp_set_num_threads(threads);
}
#endif

TEST(Matmul, Errors) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
  EXPECT_MG_ERROR(matmul(a, b), "matmul: inner dimensions differ: [2, 3] x [4, 5]");
  EXPECT_MG_ERROR(matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 4})), "matmul: shapes [2] and [3] do not broadcast");
  EXPECT_MG_ERROR(matmul(a, Tensor::zeros({3, 2}, DType::Float64)), "matmul: dtypes differ");
  EXPECT_MG_ERROR(matmul(Tensor::scalar(1.0), a), "at least 1-d");
  EXPECT_MG_ERROR(matmul(a, Tensor::zeros({3, 2}, DType::Int64)), "matmul: second operand must be float32 or float64");
}
