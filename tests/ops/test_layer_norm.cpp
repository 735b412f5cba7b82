// layer_norm: values with and without weight/bias against a naive float64
// reference, float32 vs float64, dweight/dbias on many rows against a naive
// sum and across runs, and errors (gradient checks of x, weight and bias:
// the op table, tests/ops/op_table.cpp).
#include <cmath>

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;
using moegrad::testing::leaf;

namespace {

// Naive layer norm over the last dim of a contiguous-or-not x (read with at()).
std::vector<double> ref_layer_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps) {
  const int64_t D = x.shape().back(), rows = x.numel() / D;
  Tensor xc = contiguous(x).detach();
  std::vector<double> v = xc.to_vector(), out(v.size());
  for (int64_t r = 0; r < rows; ++r) {
    double m = 0, var = 0;
    for (int64_t i = 0; i < D; ++i) m += v[r * D + i] / D;
    for (int64_t i = 0; i < D; ++i) var += (v[r * D + i] - m) * (v[r * D + i] - m) / D;
    for (int64_t i = 0; i < D; ++i)
      out[r * D + i] =
          (v[r * D + i] - m) / std::sqrt(var + eps) * (w.defined() ? w.at({i}) : 1.0) + (b.defined() ? b.at({i}) : 0.0);
  }
  return out;
}

Tensor randn64(const Shape& s, double stdev = 1.0) { return Tensor::randn(s, 0.5, stdev, DType::Float64); }

}  // namespace

TEST(LayerNorm, ValuesWithWeightAndBias) {
  Tensor x = randn64({3, 5}, 2), w = randn64({5}), b = randn64({5});
  expect_near(layer_norm(x, w, b).to_vector(), ref_layer_norm(x, w, b, 1e-5), 1e-12);
  Tensor x3 = randn64({2, 3, 4});
  Tensor w4 = randn64({4}), b4 = randn64({4});
  expect_near(layer_norm(x3, w4, b4, 0.1).to_vector(), ref_layer_norm(x3, w4, b4, 0.1), 1e-12);
  EXPECT_EQ(layer_norm(x3, w4, b4).shape(), x3.shape());
}

TEST(LayerNorm, ValuesWithoutWeightOrBias) {
  Tensor x = randn64({4, 6}, 3), w = randn64({6}), b = randn64({6});
  expect_near(layer_norm(x, Tensor(), Tensor()).to_vector(), ref_layer_norm(x, Tensor(), Tensor(), 1e-5), 1e-12);
  expect_near(layer_norm(x, w, Tensor()).to_vector(), ref_layer_norm(x, w, Tensor(), 1e-5), 1e-12);
  expect_near(layer_norm(x, Tensor(), b).to_vector(), ref_layer_norm(x, Tensor(), b, 1e-5), 1e-12);
  // plain normalisation: each row has mean 0 and (biased) variance ~1
  Tensor y = layer_norm(x, Tensor(), Tensor(), 1e-12);
  for (double m : mean(y, {1}).to_vector()) EXPECT_NEAR(m, 0.0, 1e-12);
  for (double v : mean(mul(y, y), {1}).to_vector()) EXPECT_NEAR(v, 1.0, 1e-9);
}

TEST(LayerNorm, HandValues) {
  // row [1, 3]: mean 2, var 1 -> [-1, 1] (eps tiny), then * [2, 3] + [10, 20]
  Tensor x = Tensor::from_vector({1, 3}, {1, 2}, DType::Float64);
  Tensor w = Tensor::from_vector({2, 3}, {2}, DType::Float64), b = Tensor::from_vector({10, 20}, {2}, DType::Float64);
  expect_near(layer_norm(x, w, b, 1e-12).to_vector(), {8, 23}, 1e-10);
  // a constant row normalises to 0 (no division by zero thanks to eps)
  expect_near(layer_norm(Tensor::full({1, 3}, 7.0, DType::Float64), Tensor(), Tensor()).to_vector(), {0, 0, 0}, 0);
}

TEST(LayerNorm, NonContiguousInput) {
  Tensor base = randn64({5, 3}), w = randn64({5}), b = randn64({5});
  Tensor x = transpose(base, 0, 1);  // [3, 5]
  expect_near(layer_norm(x, w, b).to_vector(), ref_layer_norm(x, w, b, 1e-5), 1e-12);
}

TEST(LayerNorm, Float32MatchesFloat64) {
  Tensor x = randn64({7, 33}, 3), w = randn64({33}), b = randn64({33});
  auto f32 = [](const Tensor& t) { return t.to(DType::Float32); };
  expect_near(layer_norm(f32(x), f32(w), f32(b)).to_vector(), layer_norm(x, w, b).to_vector(), 1e-5);
}

TEST(LayerNorm, ParamGradsManyRows) {
  // enough rows and columns for both backward passes to run on several threads
  const int64_t R = 3000, D = 24;
  Tensor x = randn64({R, D}), dy = randn64({R, D});
  x.requires_grad_();  // so the row-parallel dx pass runs too
  Tensor w = leaf({D}, 21), b = leaf({D}, 22);
  auto grads = [&]() {
    w.zero_grad(), b.zero_grad();
    layer_norm(x, w, b).backward(dy);
    return std::make_pair(w.grad().to_vector(), b.grad().to_vector());
  };
  auto [dw, db] = grads();
  // naive: dweight = sum_r dy * norm, dbias = sum_r dy
  std::vector<double> norm = ref_layer_norm(x, Tensor(), Tensor(), 1e-5), ddy = dy.to_vector();
  std::vector<double> want_dw(D, 0.0), want_db(D, 0.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < D; ++i) want_dw[i] += ddy[r * D + i] * norm[r * D + i], want_db[i] += ddy[r * D + i];
  expect_near(dw, want_dw, 1e-9);
  expect_near(db, want_db, 1e-9);
  auto [dw2, db2] = grads();  // deterministic: bitwise equal on a second run
  EXPECT_EQ(dw, dw2);
  EXPECT_EQ(db, db2);
}

TEST(LayerNorm, Errors) {
  Tensor x = Tensor::zeros({2, 3}), w = Tensor::ones({3}), b = Tensor::zeros({3});
  EXPECT_MG_ERROR(layer_norm(Tensor(), w, b), "layer_norm: input is an undefined tensor");
  EXPECT_MG_ERROR(layer_norm(Tensor::zeros({2, 3}, DType::Int64), Tensor(), Tensor()),
                  "layer_norm: input must be float32 or float64, got int64");
  EXPECT_MG_ERROR(layer_norm(Tensor::scalar(1.0), Tensor(), Tensor()), "layer_norm: input must have at least one");
  EXPECT_MG_ERROR(layer_norm(x, Tensor::ones({4}), b),
                  "layer_norm: weight must have shape [3] for input of shape [2, 3], got [4]");
  EXPECT_MG_ERROR(layer_norm(x, w, Tensor::zeros({1, 3})), "layer_norm: bias must have shape [3]");
  EXPECT_MG_ERROR(layer_norm(x, Tensor::ones({3}, DType::Float64), b), "layer_norm: dtypes differ");
  EXPECT_MG_ERROR(layer_norm(x, w, Tensor::zeros({3}, DType::Int64)), "layer_norm: bias must be float32 or float64");
  EXPECT_MG_ERROR(layer_norm(x, w, b, 0.0), "layer_norm: eps must be positive and finite, got 0");
  EXPECT_MG_ERROR(layer_norm(x, w, b, -1e-5), "layer_norm: eps must be positive");
  EXPECT_MG_ERROR(layer_norm(x, w, b, NAN), "layer_norm: eps must be positive");
  EXPECT_MG_ERROR(layer_norm(x, w, b, INFINITY), "layer_norm: eps must be positive and finite, got inf");
}
