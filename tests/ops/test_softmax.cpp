// softmax and log_softmax: values along every dim of a 3-d tensor and of a
// transposed input against a naive float64 reference, rows summing to 1, large
// inputs, float32 vs float64 and errors (gradient checks: the op table,
// tests/ops/op_table.cpp).
#include <cmath>

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;

namespace {

// Naive softmax (or log_softmax) of x along dim, in row-major order of x's
// shape; reads x element by element, so any layout works.
std::vector<double> ref_softmax(const Tensor& x, int64_t dim, bool log) {
  const Shape& shape = x.shape();
  const int64_t d = dim < 0 ? dim + x.dim() : dim;
  std::vector<double> out;
  for (int64_t flat = 0; flat < x.numel(); ++flat) {
    Shape idx(shape.size());
    for (int64_t k = x.dim() - 1, r = flat; k >= 0; --k) idx[k] = r % shape[k], r /= shape[k];
    Shape j = idx;
    double m = -INFINITY, s = 0;
    for (j[d] = 0; j[d] < shape[d]; ++j[d]) m = std::max(m, x.at(j));
    for (j[d] = 0; j[d] < shape[d]; ++j[d]) s += std::exp(x.at(j) - m);
    const double v = x.at(idx) - m;
    out.push_back(log ? v - std::log(s) : std::exp(v) / s);
  }
  return out;
}

Tensor (*const kOps[])(const Tensor&, int64_t) = {softmax, log_softmax};

}  // namespace

TEST(Softmax, ValuesEveryDim3d) {
  Tensor x = Tensor::randn({2, 3, 4}, 0, 2, DType::Float64);
  for (int64_t dim : {0, 1, 2, -1, -3}) {
    expect_near(softmax(x, dim).to_vector(), ref_softmax(x, dim, false), 1e-12);
    expect_near(log_softmax(x, dim).to_vector(), ref_softmax(x, dim, true), 1e-12);
    EXPECT_EQ(softmax(x, dim).shape(), x.shape());
  }
}

TEST(Softmax, ValuesTransposedInput) {
  Tensor base = Tensor::randn({2, 3, 4}, 0, 2, DType::Float64);
  Tensor x = transpose(base, 0, 2);  // [4, 3, 2], not contiguous
  ASSERT_FALSE(x.is_contiguous());
  for (int64_t dim : {0, 1, -1}) {
    expect_near(softmax(x, dim).to_vector(), ref_softmax(x, dim, false), 1e-12);
    expect_near(log_softmax(x, dim).to_vector(), ref_softmax(x, dim, true), 1e-12);
  }
}

TEST(Softmax, HandValues) {
  Tensor x = Tensor::from_vector({0, std::log(3.0)}, {2}, DType::Float64);
  expect_near(softmax(x, 0).to_vector(), {0.25, 0.75}, 1e-15);
  expect_near(log_softmax(x, 0).to_vector(), {std::log(0.25), std::log(0.75)}, 1e-15);
  // a 0-d tensor is one row of one element
  EXPECT_DOUBLE_EQ(softmax(Tensor::scalar(3.0, DType::Float64), 0).item(), 1.0);
  EXPECT_DOUBLE_EQ(log_softmax(Tensor::scalar(3.0, DType::Float64), -1).item(), 0.0);
}

TEST(Softmax, RowsSumToOne) {
  // big enough to run on several threads
  Tensor x = Tensor::randn({300, 257}, 0, 3, DType::Float32);
  for (int64_t dim : {0, 1}) {
    std::vector<double> s = sum(softmax(x, dim), {dim}).to_vector();
    for (double v : s) EXPECT_NEAR(v, 1.0, 1e-5);
    std::vector<double> ls = sum(exp(log_softmax(x, dim)), {dim}).to_vector();
    for (double v : ls) EXPECT_NEAR(v, 1.0, 1e-5);
  }
}

TEST(Softmax, LargeInputsDoNotOverflow) {
  for (DType dt : {DType::Float32, DType::Float64}) {
    Tensor x = Tensor::from_vector({1000, 1001, 1002, -1000, -1001, -1002}, {2, 3}, dt);
    std::vector<double> y = softmax(x, 1).to_vector(), ly = log_softmax(x, 1).to_vector();
    const double z = 1 + std::exp(-1.0) + std::exp(-2.0);
    expect_near(y, {std::exp(-2.0) / z, std::exp(-1.0) / z, 1 / z, 1 / z, std::exp(-1.0) / z, std::exp(-2.0) / z},
                1e-6);
    expect_near(
        ly, {-2 - std::log(z), -1 - std::log(z), -std::log(z), -std::log(z), -1 - std::log(z), -2 - std::log(z)}, 1e-5);
    // columns: 1000 vs -1000 puts all mass on one entry, exactly
    expect_near(softmax(x, 0).to_vector(), {1, 1, 1, 0, 0, 0}, 0);
  }
}

TEST(Softmax, Float32MatchesFloat64) {
  Tensor x = Tensor::randn({4, 5, 6}, 0, 3, DType::Float64);
  for (auto op : kOps)
    for (int64_t dim : {0, 2}) expect_near(op(x.to(DType::Float32), dim).to_vector(), op(x, dim).to_vector(), 1e-5);
}

TEST(Softmax, Errors) {
  Tensor x = Tensor::zeros({2, 3, 4});
  EXPECT_MG_ERROR(softmax(x, 3), "softmax: dimension 3 out of range for a 3-d tensor");
  EXPECT_MG_ERROR(log_softmax(x, -4), "log_softmax: dimension -4 out of range");
  EXPECT_MG_ERROR(softmax(Tensor(), 0), "softmax: input is an undefined tensor");
  EXPECT_MG_ERROR(log_softmax(Tensor::zeros({3}, DType::Int64), 0), "log_softmax: input must be float32 or float64");
}
