// concat and stack: values against naive loops along every dim, negative
// dims, non-contiguous inputs, int64 inputs and errors (gradient checks: the
// op table, tests/ops/op_table.cpp).
#include "test_helpers.h"

using namespace moegrad;

namespace {

// Naive concat of 3-d tensors along d.
std::vector<double> naive_concat3(const std::vector<Tensor>& xs, int64_t d) {
  Shape out = xs[0].shape();
  out[d] = 0;
  for (const Tensor& x : xs) out[d] += x.shape()[d];
  std::vector<double> v;
  for (int64_t i = 0; i < out[0]; ++i)
    for (int64_t j = 0; j < out[1]; ++j)
      for (int64_t k = 0; k < out[2]; ++k) {
        Shape at{i, j, k};
        size_t t = 0;
        while (at[d] >= xs[t].shape()[d]) at[d] -= xs[t++].shape()[d];
        v.push_back(xs[t].at(at));
      }
  return v;
}

}  // namespace

TEST(Concat, Values) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4}, {2, 2}, DType::Float64);
  Tensor b = Tensor::from_vector({5, 6}, {1, 2}, DType::Float64);
  Tensor c = Tensor::from_vector({7, 8, 9, 10, 11, 12}, {2, 3}, DType::Float64);
  EXPECT_EQ(concat({a, b}, 0).to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(concat({a, c}, -1).to_vector(), (std::vector<double>{1, 2, 7, 8, 9, 3, 4, 10, 11, 12}));
  EXPECT_EQ(concat({a}, 1).to_vector(), a.to_vector());
  Tensor i = concat({Tensor::from_indices({1, 2}, {2}), Tensor::from_indices({3}, {1})}, 0);
  EXPECT_EQ(i.to_indices(), (std::vector<int64_t>{1, 2, 3}));
}

TEST(Concat, AgainstNaiveNonContiguous) {
  Tensor x = Tensor::randn({2, 3, 4}, 0, 1, DType::Float64);
  Tensor y = transpose(Tensor::randn({4, 3, 2}, 0, 1, DType::Float64), 0, 2);  // [2, 3, 4]
  for (int64_t d : {0, 1, 2}) {
    Tensor z = narrow(Tensor::randn({2, 3, 4}, 0, 1, DType::Float64), d, 1, 1);
    std::vector<Tensor> xs{x, y, z};
    EXPECT_EQ(concat(xs, d).to_vector(), naive_concat3(xs, d)) << "dim " << d;
  }
}

TEST(Stack, Values) {
  Tensor a = Tensor::from_vector({1, 2, 3}, {3}, DType::Float64);
  Tensor b = Tensor::from_vector({4, 5, 6}, {3}, DType::Float64);
  Tensor s0 = stack({a, b}, 0), s1 = stack({a, b}, -1);
  EXPECT_EQ(s0.shape(), (Shape{2, 3}));
  EXPECT_EQ(s0.to_vector(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(s1.shape(), (Shape{3, 2}));
  EXPECT_EQ(s1.to_vector(), (std::vector<double>{1, 4, 2, 5, 3, 6}));
  EXPECT_EQ(stack({Tensor::scalar(1.0), Tensor::scalar(2.0)}, 0).to_vector(), (std::vector<double>{1, 2}));
}

TEST(Concat, Float32MatchesFloat64) {
  Tensor a = Tensor::randn({3, 2}, 0, 1, DType::Float64), b = Tensor::randn({3, 4}, 0, 1, DType::Float64);
  std::vector<double> ref = concat({a, b}, 1).to_vector();
  std::vector<double> got = concat({a.to(DType::Float32), b.to(DType::Float32)}, 1).to_vector();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-6);
}

TEST(Concat, Errors) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({2, 4});
  EXPECT_MG_ERROR(concat({}, 0), "concat: expected at least one tensor, got an empty list");
  EXPECT_MG_ERROR(concat({a, b}, 0), "concat: tensor 1 has shape [2, 4], tensor 0 has [2, 3]");
  EXPECT_MG_ERROR(concat({a, Tensor::zeros({2, 3, 1})}, 0), "concat: tensor 1 has shape [2, 3, 1]");
  EXPECT_MG_ERROR(concat({a, Tensor::zeros({2, 3}, DType::Float64)}, 0), "concat: tensor 1 has dtype float64");
  EXPECT_MG_ERROR(concat({a, b}, 2), "concat: dimension 2 out of range");
  EXPECT_MG_ERROR(concat({a, Tensor()}, 0), "concat: tensor 1 is undefined");
  EXPECT_MG_ERROR(concat({Tensor::scalar(1.0)}, 0), "concat: tensor 0 is 0-d");
}

TEST(Stack, Errors) {
  Tensor a = Tensor::zeros({2, 3});
  EXPECT_MG_ERROR(stack({}, 0), "stack: expected at least one tensor");
  EXPECT_MG_ERROR(stack({a, Tensor::zeros({3, 2})}, 0), "stack: tensor 1 has shape [3, 2], tensor 0 has [2, 3]");
  EXPECT_MG_ERROR(stack({a, Tensor::zeros({2, 3}, DType::Int64)}, 0), "stack: tensor 1 has dtype int64");
  EXPECT_MG_ERROR(stack({a, a}, 3), "stack: dimension 3 out of range");
  EXPECT_MG_ERROR(stack({a, a}, -4), "stack: dimension -4 out of range");
}
