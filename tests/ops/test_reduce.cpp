// sum, mean, max over dims (keepdim or not), argmax and sum_to: values against
// naive loops (including the leading-dims fast path), sum_to's shape, and
// errors (gradient checks: the op table, tests/ops/op_table.cpp).
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;

// Naive reference: reduce x [A, B, C] over dim d with op.
static std::vector<double> naive(const Tensor& x, int d, bool take_max) {
  const Shape s = x.shape();
  std::vector<double> out;
  auto at = [&](int64_t i, int64_t j, int64_t k) { return x.at({i, j, k}); };
  int64_t n0 = d == 0 ? 1 : s[0], n1 = d == 1 ? 1 : s[1], n2 = d == 2 ? 1 : s[2];
  for (int64_t i = 0; i < n0; ++i)
    for (int64_t j = 0; j < n1; ++j)
      for (int64_t k = 0; k < n2; ++k) {
        double acc = take_max ? -1e300 : 0;
        for (int64_t r = 0; r < s[d]; ++r) {
          double v = d == 0 ? at(r, j, k) : d == 1 ? at(i, r, k) : at(i, j, r);
          acc = take_max ? std::max(acc, v) : acc + v;
        }
        out.push_back(acc);
      }
  return out;
}

TEST(Reduce, ValuesAgainstLoops) {
  Tensor x = Tensor::randn({3, 4, 5}, 0, 1, DType::Float64);
  for (int d = 0; d < 3; ++d) {
    expect_near(sum(x, {d}).to_vector(), naive(x, d, false), 1e-12);
    expect_near(max(x, {d}).to_vector(), naive(x, d, true), 0);
    std::vector<double> m = naive(x, d, false);
    for (double& v : m) v /= x.shape()[d];
    expect_near(mean(x, {d}, true).to_vector(), m, 1e-12);
  }
  EXPECT_EQ(sum(x, {1}, true).shape(), (Shape{3, 1, 5}));
  EXPECT_EQ(sum(x, {0, 2}).shape(), (Shape{4}));
  EXPECT_EQ(sum(x).shape(), Shape{});
  double total = 0;
  for (double v : x.to_vector()) total += v;
  EXPECT_NEAR(sum(x).item(), total, 1e-12);
  // float32 input accumulates in double
  Tensor big = Tensor::full({1 << 20}, 0.1, DType::Float32);
  EXPECT_NEAR(sum(big).item(), 0.1 * (1 << 20), 1.0);
}

TEST(Reduce, LeadingDimsFastPathMatchesGeneralPath) {
  Tensor x = Tensor::randn({64, 33}, 0, 1, DType::Float64);
  expect_near(sum(x, {0}).to_vector(), sum(transpose(contiguous(transpose(x, 0, 1)), 0, 1), {0}).to_vector(), 1e-12);
  expect_near(sum(x, {0}).to_vector(), naive(reshape(x, {64, 33, 1}), 0, false), 1e-12);
}

TEST(Reduce, ArgmaxAndTies) {
  Tensor x = Tensor::from_vector({1, 5, 5, 2, 7, 0}, {2, 3}, DType::Float64);
  EXPECT_EQ(argmax(x, 1).to_indices(), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(argmax(x, 0, true).shape(), (Shape{1, 3}));
  EXPECT_EQ(argmax(x, 0).to_indices(), (std::vector<int64_t>{1, 1, 0}));
  // max's gradient goes to the first maximum only
  Tensor y = Tensor::from_vector({3, 3, 1}, {3}, DType::Float64);
  y.requires_grad_();
  max(y, {0}).backward();
  EXPECT_EQ(y.grad().to_vector(), (std::vector<double>{1, 0, 0}));
}

TEST(Reduce, SumToShape) {
  Tensor x = Tensor::zeros({2, 3, 4}, DType::Float64);
  EXPECT_EQ(sum_to(x, {3, 1}).shape(), (Shape{3, 1}));
}

TEST(Reduce, Errors) {
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_MG_ERROR(sum(x, {2}), "sum: dimension 2 out of range for a 2-d tensor");
  EXPECT_MG_ERROR(sum(x, {1, -1}), "sum: dimension -1 repeated");
  EXPECT_MG_ERROR(mean(Tensor::zeros({0, 3}), {0}), "mean: reducing over an empty dimension");
  EXPECT_MG_ERROR(max(Tensor::zeros({2, 0}), {1}), "max: reducing over an empty dimension of shape [2, 0]");
  EXPECT_MG_ERROR(sum(Tensor::zeros({2}, DType::Int64)), "sum: input must be float32 or float64, got int64");
  EXPECT_MG_ERROR(sum_to(x, {4}), "sum_to");
  EXPECT_MG_ERROR(argmax(x, 3), "argmax: dimension 3 out of range");
}
