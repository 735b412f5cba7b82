// sum, mean, max, argmax and sum_to on CUDA tensors against the CPU: the
// long-row and column (leading dims) paths, NaN in max, sum_to and run-to-run
// determinism. Every dim set with and without keepdim, contiguous and strided,
// and the float64 gradchecks on the device: the op table,
// tests/ops/op_table.cpp. Tolerances: test_cuda_helpers.h (float64 1e-12
// relative, atol 1e-14: the summation order differs from the CPU's).
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

TEST(CudaReduce, LongRowsColumnsAndEmpty) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const Tol tol = dtype == DType::Float64 ? Tol{1e-12, 1e-12} : Tol{1e-4, 1e-4};
    // one very long row (chunked), a few long rows, many short rows
    for (Shape shape : {Shape{1, 300000}, Shape{3, 70001}, Shape{5000, 7}, Shape{2, 65}}) {
      Tensor x = uniform(shape, dtype, 2);
      expect_close(sum(on_cuda(x), {1}), sum(x, {1}), tol, "rows " + shape_str(shape));
      expect_close(max(on_cuda(x), {1}), max(x, {1}), "max rows " + shape_str(shape));
      EXPECT_EQ(argmax(on_cuda(x), 1).to_indices(), argmax(x, 1).to_indices()) << shape_str(shape);
      // leading dims reduced: the column path (bias gradients)
      expect_close(sum(on_cuda(x), {0}), sum(x, {0}), tol, "columns " + shape_str(shape));
    }
  }
  Tensor e = Tensor::zeros({3, 0}, DType::Float64);
  expect_close(sum(on_cuda(e), {1}), sum(e, {1}), "empty rows");
  EXPECT_MG_ERROR(mean(on_cuda(e), {1}), "mean: reducing over an empty dimension");
  EXPECT_MG_ERROR(max(on_cuda(e), {1}), "reducing over an empty dimension");
}

TEST(CudaReduce, MaxTiesAndNaNAsOnCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (int64_t n : {5, 300}) {  // the one-thread and one-block paths
    std::vector<double> v(2 * n, 1.0);
    v[3] = 4.0, v[n - 1] = 4.0;            // tie in row 0: the first wins
    v[n + 2] = NAN, v[n + 4] = 9.0;        // NaN in row 1 wins over a larger number
    if (n > 100) v[n + 200] = NAN;         // and the first NaN is the one
    Tensor x = Tensor::from_vector(v, {2, n}, DType::Float64);
    EXPECT_EQ(argmax(on_cuda(x), 1).to_indices(), argmax(x, 1).to_indices()) << n;
    EXPECT_EQ(argmax(x, 1).to_indices(), (std::vector<int64_t>{3, 2})) << n;
    std::vector<double> m = max(on_cuda(x), {1}).to_vector();
    EXPECT_EQ(m[0], 4.0);
    EXPECT_TRUE(std::isnan(m[1]));
  }
}

TEST(CudaReduce, SumToAndDeterminism) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = uniform({4, 3, 5}, DType::Float64, 3);
  for (Shape to : {Shape{3, 5}, Shape{3, 1}, Shape{1, 5}, Shape{}, Shape{4, 1, 5}, Shape{4, 3, 5}})
    expect_close(sum_to(on_cuda(x), to), sum_to(x, to), "sum_to " + shape_str(to));
  // the same input gives bit-identical sums on every run
  Tensor big = on_cuda(uniform({3, 200000}, DType::Float32, 4));
  const std::vector<double> first = sum(big, {1}).to_vector(), cols = sum(big, {0}).to_vector();
  for (int run = 0; run < 3; ++run) {
    EXPECT_EQ(sum(big, {1}).to_vector(), first);
    EXPECT_EQ(sum(big, {0}).to_vector(), cols);
  }
}

