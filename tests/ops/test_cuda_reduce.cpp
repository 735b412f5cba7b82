// sum, mean, max, argmax and sum_to on CUDA tensors against the CPU: every
// dim set, keepdim, non-contiguous inputs, the long-row and column (leading
// dims) paths, NaN in max, run-to-run determinism, and float64 gradchecks on
// the device. Tolerances: test_cuda_helpers.h (float64 1e-12 relative, atol
// 1e-14: the summation order differs from the CPU's).
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

const std::vector<std::vector<int64_t>>& dim_sets() {
  static const std::vector<std::vector<int64_t>> all = {{}, {0}, {1}, {2}, {-1}, {0, 1}, {0, 2}, {1, 2}, {0, 1, 2}};
  return all;
}

}  // namespace

TEST(CudaReduce, SumMeanMaxMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool strided : {false, true})
      for (const auto& dims : dim_sets())
        for (bool keepdim : {false, true}) {
          Tensor x = uniform({4, 5, 6}, dtype, 1);
          if (strided) x = permute(contiguous(permute(x, {2, 0, 1})), {1, 2, 0});
          Tensor d = on_cuda(x);
          const std::string what = std::string(dtype_name(dtype)) + " dims " + shape_str(dims) +
                                   (keepdim ? " keepdim" : "") + (strided ? " strided" : "");
          expect_close(sum(d, dims, keepdim), sum(x, dims, keepdim), "sum " + what);
          expect_close(mean(d, dims, keepdim), mean(x, dims, keepdim), "mean " + what);
          expect_close(max(d, dims, keepdim), max(x, dims, keepdim), "max " + what);
        }
}

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

TEST(CudaReduce, GradcheckOnDevice) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = on_cuda(uniform({3, 4, 2}, DType::Float64, 5)).requires_grad_();
  for (const auto& dims : dim_sets()) {
    EXPECT_GRADCHECK([dims](const std::vector<Tensor>& in) { return sum(in[0], dims); }, {x});
    EXPECT_GRADCHECK([dims](const std::vector<Tensor>& in) { return mean(in[0], dims, true); }, {x});
    EXPECT_GRADCHECK([dims](const std::vector<Tensor>& in) { return max(in[0], dims); }, {x});
  }
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return sum_to(in[0], {4, 1}); }, {x});
}

