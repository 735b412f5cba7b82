// topk: sorted values and indices against a naive stable sort, ties to the
// lower index, k = size, largest = false, a non-last dim, non-contiguous
// input, NaN, the gradient going to the selected entries, float32 against
// float64, and errors (gradient checks: the op table, tests/ops/op_table.cpp).
#include <algorithm>
#include <cmath>
#include <numeric>

#include "test_helpers.h"

using namespace moegrad;

namespace {

// Reference: for each row of a 2-d tensor, a stable sort of the positions by
// value (descending when largest), truncated to k.
void expect_topk_rows(const Tensor& x, int64_t k, bool largest) {
  TopK r = topk(x, k, -1, largest);
  const int64_t rows = x.shape()[0], n = x.shape()[1];
  ASSERT_EQ(r.values.shape(), (Shape{rows, k}));
  ASSERT_EQ(r.indices.shape(), (Shape{rows, k}));
  std::vector<double> xv = x.to_vector(), vals = r.values.to_vector();
  std::vector<int64_t> idxs = r.indices.to_indices();
  for (int64_t i = 0; i < rows; ++i) {
    std::vector<int64_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return largest ? xv[i * n + a] > xv[i * n + b] : xv[i * n + a] < xv[i * n + b];
    });
    for (int64_t c = 0; c < k; ++c) {
      EXPECT_EQ(idxs[i * k + c], order[c]) << "row " << i << " column " << c;
      EXPECT_EQ(vals[i * k + c], xv[i * n + order[c]]) << "row " << i << " column " << c;
    }
  }
}

}  // namespace

TEST(Topk, ValuesWithTies) {
  Tensor x = Tensor::from_vector({1, 3, 3, 2, 3, 0, 5, 5, 5, 5, -1, 5}, {2, 6}, DType::Float64);
  TopK r = topk(x, 3);
  EXPECT_EQ(r.values.to_vector(), (std::vector<double>{3, 3, 3, 5, 5, 5}));
  EXPECT_EQ(r.indices.to_indices(), (std::vector<int64_t>{1, 2, 4, 0, 1, 2}));
  TopK s = topk(x, 2, 1, false);
  EXPECT_EQ(s.values.to_vector(), (std::vector<double>{0, 1, -1, 5}));
  EXPECT_EQ(s.indices.to_indices(), (std::vector<int64_t>{5, 0, 4, 0}));
}

TEST(Topk, AgainstStableSort) {
  // few distinct values (integers 0..3), so many ties
  std::vector<double> v = Tensor::rand({7, 11}, 0, 4, DType::Float64).to_vector();
  for (double& e : v) e = std::floor(e);
  Tensor x = Tensor::from_vector(v, {7, 11}, DType::Float64);
  for (bool largest : {true, false})
    for (int64_t k : {1, 4, 11}) expect_topk_rows(x, k, largest);  // k = 11 is the whole row
}

TEST(Topk, NonLastDimAndNonContiguous) {
  Tensor x = Tensor::randn({4, 5, 3}, 0, 1, DType::Float64);
  // along dim 1 of x equals along the last dim of x moved last
  TopK a = topk(x, 2, 1);
  EXPECT_EQ(a.values.shape(), (Shape{4, 2, 3}));
  TopK b = topk(contiguous(transpose(x, 1, 2)), 2, -1);
  EXPECT_EQ(a.values.to_vector(), contiguous(transpose(b.values, 1, 2)).to_vector());
  EXPECT_EQ(a.indices.to_indices(), contiguous(transpose(b.indices, 1, 2)).to_indices());
  // a transposed (non-contiguous) input gives what its contiguous copy gives
  Tensor xt = transpose(x, 0, 2);  // [3, 5, 4]
  for (int64_t d : {0, 1, 2}) {
    TopK c = topk(xt, 2, d, false), e = topk(contiguous(xt), 2, d, false);
    EXPECT_EQ(c.values.to_vector(), e.values.to_vector());
    EXPECT_EQ(c.indices.to_indices(), e.indices.to_indices());
  }
}

TEST(Topk, NaNIsLargest) {
  Tensor x = Tensor::from_vector({1, NAN, 3, NAN}, {4}, DType::Float64);
  TopK r = topk(x, 3);
  EXPECT_EQ(r.indices.to_indices(), (std::vector<int64_t>{1, 3, 2}));
  EXPECT_TRUE(std::isnan(r.values.to_vector()[0]));
  EXPECT_EQ(topk(x, 2, 0, false).indices.to_indices(), (std::vector<int64_t>{0, 2}));
}

TEST(Topk, GradientGoesToSelectedEntries) {
  Tensor x = Tensor::from_vector({4, 1, 3, 2, 0, 5}, {2, 3}, DType::Float64);
  x.requires_grad_();
  TopK r = topk(x, 2);  // row 0: 4 (0), 3 (2); row 1: 5 (2), 2 (0)
  r.values.backward(Tensor::from_vector({10, 20, 30, 40}, {2, 2}, DType::Float64));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{10, 0, 20, 40, 0, 30}));
}

TEST(Topk, Float32MatchesFloat64) {
  Tensor x = Tensor::randn({6, 9}, 0, 1, DType::Float64);
  TopK a = topk(x, 4), b = topk(x.to(DType::Float32), 4);
  EXPECT_EQ(a.indices.to_indices(), b.indices.to_indices());
  std::vector<double> av = a.values.to_vector(), bv = b.values.to_vector();
  for (size_t i = 0; i < av.size(); ++i) EXPECT_NEAR(av[i], bv[i], 1e-6);
}

TEST(Topk, Errors) {
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_MG_ERROR(topk(x, 0), "topk: k = 0 out of range [1, 3]");
  EXPECT_MG_ERROR(topk(x, 4), "topk: k = 4 out of range [1, 3]");
  EXPECT_MG_ERROR(topk(x, 3, 0), "topk: k = 3 out of range [1, 2] for dimension 0");
  EXPECT_MG_ERROR(topk(x, 1, 2), "topk: dimension 2 out of range");
  EXPECT_MG_ERROR(topk(Tensor::scalar(1.0), 1), "topk: expected a tensor with at least one dimension");
  EXPECT_MG_ERROR(topk(Tensor::zeros({3}, DType::Int64), 1), "topk: input must be float32 or float64");
  EXPECT_MG_ERROR(topk(Tensor(), 1), "topk: input is an undefined tensor");
}
