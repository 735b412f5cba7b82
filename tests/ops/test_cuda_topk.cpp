// topk on CUDA tensors against the CPU: values and int64 indices for largest
// and smallest, every k from 1 to the row length, ties (to the lower index),
// NaN (above every number), -0 and +0, rows shorter and longer than a block,
// another dim than the last, strided inputs, many rows; the backward (a
// scatter_add of the values' gradient); errors (the float64 gradcheck on the
// device: the op table, tests/ops/op_table.cpp). Selection under a total order has one answer: exact equality.
#include <limits>

#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {


void expect_same_topk(const Tensor& x, int64_t k, int64_t dim, bool largest, const std::string& what) {
  TopK want = topk(x, k, dim, largest);
  TopK got = topk(on_cuda_like(x), k, dim, largest);
  EXPECT_EQ(got.values.device(), Device::cuda(0)) << what;
  EXPECT_EQ(got.indices.dtype(), DType::Int64) << what;
  expect_close(got.values, want.values, Tol{0, 0}, what + " values");
  EXPECT_EQ(got.indices.to_indices(), want.indices.to_indices()) << what << " indices";
  EXPECT_EQ(got.indices.shape(), want.indices.shape()) << what;
}

// Small integers (many ties) with a NaN and signed zeros.
Tensor tied_values(const Shape& shape, DType dtype, uint64_t seed) {
  std::vector<double> v = uniform(shape, DType::Float64, seed, -3, 3).to_vector();
  for (double& x : v) x = std::floor(x);
  if (v.size() > 3) {
    v[1] = std::numeric_limits<double>::quiet_NaN();
    v[2] = -0.0;
  }
  return Tensor::from_vector(v, shape, dtype);
}

}  // namespace

TEST(CudaTopk, MatchesCpuForEveryK) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (int64_t n : {1, 5, 16, 64, 300})  // 300: longer than a block of 256
      for (bool largest : {true, false}) {
        Tensor x = tied_values({9, n}, dtype, static_cast<uint64_t>(n));
        for (int64_t k = 1; k <= n; k += (n > 20 ? 13 : 1))
          expect_same_topk(x, k, -1, largest,
                           std::string(dtype_name(dtype)) + " n " + std::to_string(n) + " k " + std::to_string(k) +
                               (largest ? " largest" : " smallest"));
        expect_same_topk(x, n, -1, largest, "k = n");
        // distinct values too
        expect_same_topk(uniform({9, n}, dtype, 1), std::min<int64_t>(n, 4), -1, largest, "distinct");
      }
}

TEST(CudaTopk, OtherDimsStridedAndManyRows) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = tied_values({4, 6, 5}, DType::Float64, 2);
  for (int64_t dim : {0, 1, 2}) expect_same_topk(x, 2, dim, true, "dim " + std::to_string(dim));
  expect_same_topk(transpose(x, 0, 2), 3, 1, false, "strided");
  // more rows than one grid (65535 blocks): the grid-stride loop over rows
  expect_same_topk(uniform({70000, 8}, DType::Float32, 3), 2, -1, true, "many rows");
  // empty rows dimension
  TopK e = topk(on_cuda_like(uniform({0, 4}, DType::Float64, 4)), 2, -1, true);
  EXPECT_EQ(e.values.shape(), (Shape{0, 2}));
}

TEST(CudaTopk, BackwardMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (int64_t dim : {0, 1}) {
      Tensor x = uniform({6, 10}, dtype, 5), g = uniform(dim == 1 ? Shape{6, 3} : Shape{3, 10}, dtype, 6);
      Tensor hx = x.detach().requires_grad_(), dx = on_cuda(x).requires_grad_();
      topk(hx, 3, dim).values.backward(g);
      topk(dx, 3, dim).values.backward(on_cuda_like(g));
      expect_close(dx.grad(), hx.grad(), Tol{0, 0}, std::string("backward ") + dtype_name(dtype));
    }
}

TEST(CudaTopk, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor d = on_cuda_like(Tensor::ones({3, 4}));
  EXPECT_MG_ERROR(topk(d, 5), "topk: k = 5 out of range [1, 4]");
  EXPECT_MG_ERROR(topk(d, 0), "topk: k = 0 out of range");
  EXPECT_MG_ERROR(topk(on_cuda_like(Tensor::ones({3}, DType::Int64)), 1), "topk: input must be float32 or float64");
  EXPECT_MG_ERROR(topk(d, 1, 2), "topk: dimension 2 out of range");
}
