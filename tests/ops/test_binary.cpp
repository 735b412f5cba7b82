// add, sub, mul, div and their scalar forms: values, broadcasting,
// non-contiguous inputs, gradchecks and errors.
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

TEST(Binary, ValuesBroadcast) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64);
  Tensor b = Tensor::from_vector({10, 20, 30}, {3}, DType::Float64);
  EXPECT_EQ((a + b).to_vector(), (std::vector<double>{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ((a - b).to_vector(), (std::vector<double>{-9, -18, -27, -6, -15, -24}));
  EXPECT_EQ((a * b).to_vector(), (std::vector<double>{10, 40, 90, 40, 100, 180}));
  Tensor c = Tensor::from_vector({2, 4}, {2, 1}, DType::Float64);
  EXPECT_EQ((a / c).to_vector(), (std::vector<double>{0.5, 1, 1.5, 1, 1.25, 1.5}));
  EXPECT_EQ((1.0 - a).to_vector(), (std::vector<double>{0, -1, -2, -3, -4, -5}));
  EXPECT_EQ((6.0 / a).to_vector(), (std::vector<double>{6, 3, 2, 1.5, 1.2, 1}));
  EXPECT_EQ((a * 2.0 + 1.0).to_vector(), (std::vector<double>{3, 5, 7, 9, 11, 13}));
}

TEST(Binary, Float32MatchesFloat64) {
  Tensor a = Tensor::randn({5, 7}, 0, 1, DType::Float64);
  Tensor b = Tensor::randn({7}, 0, 1, DType::Float64);
  auto ref = (a * b + a / (b * b + 1.0)).to_vector();
  auto got = (a.to(DType::Float32) * b.to(DType::Float32) +
              a.to(DType::Float32) / (b.to(DType::Float32) * b.to(DType::Float32) + 1.0))
                 .to_vector();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-5);
}

TEST(Binary, Gradcheck) {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{2, 1, 4}, {3, 1}}, {{}, {2, 3}}, {{5}, {}}};
  for (auto& [sa, sb] : shapes) {
    Tensor a = leaf(sa, 1), b = leaf(sb, 2, 0.5, 2.0);  // b away from 0 for div
    for (auto f : {add, sub, mul, div}) {
      Tensor (*op)(const Tensor&, const Tensor&) = f;
      EXPECT_GRADCHECK([op](const std::vector<Tensor>& in) { return op(in[0], in[1]); }, {a, b});
    }
  }
}

TEST(Binary, GradcheckNonContiguous) {
  Tensor a = leaf({4, 3}, 3), b = leaf({3, 8}, 4, 0.5, 2.0);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return mul(transpose(in[0], 0, 1), narrow(in[1], 1, 2, 4)); },
                   {a, b});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return div(transpose(in[0], 0, 1), slice(in[1], 1, 0, 8, 2)); },
                   {a, b});
}

TEST(Binary, GradcheckScalarForms) {
  Tensor a = leaf({3, 2}, 5, 0.5, 2.0);
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return in[0] * 3.0 + 2.0; }, {a});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return 1.0 - in[0]; }, {a});
  EXPECT_GRADCHECK([](const std::vector<Tensor>& in) { return 2.0 / in[0]; }, {a});
}

TEST(Binary, Errors) {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4});
  EXPECT_MG_ERROR(add(a, b), "add: shapes [2, 3] and [4] do not broadcast");
  EXPECT_MG_ERROR(mul(a, Tensor::zeros({2, 3}, DType::Float64)), "mul: dtypes differ");
  EXPECT_MG_ERROR(div(a, Tensor::zeros({2, 3}, DType::Int64)), "div: second input must be float32 or float64");
  EXPECT_MG_ERROR(sub(Tensor(), a), "sub: first input is an undefined tensor");
  EXPECT_MG_ERROR(add_(a, Tensor::zeros({3, 3})), "add_");
}
