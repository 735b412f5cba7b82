// Pointwise unary ops (neg, exp, log, sqrt, pow, abs, relu, gelu, tanh,
// sigmoid): values against std:: references in float64, float32 against
// float64, gradients at the kinks, errors (gradient checks over several
// shapes and non-contiguous inputs: the op table, tests/ops/op_table.cpp).
#include <cmath>
#include <functional>

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

namespace {

using UnaryFn = std::function<Tensor(const Tensor&)>;
using RefFn = std::function<double(double)>;

struct Case {
  const char* name;
  UnaryFn op;
  RefFn ref;
  double low, high;  // input range where the op is smooth
};

double gelu_erf_ref(double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }
double gelu_tanh_ref(double x) {
  return 0.5 * x * (1 + std::tanh(std::sqrt(2.0 / std::acos(-1.0)) * (x + 0.044715 * x * x * x)));
}

// Every op with a std:: reference and an input range. abs and relu are given
// [0.1, 2) here; tests flip signs with away_from_zero() to cover x < 0.
const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, -2, 2},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, -2, 2},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, 0.1, 3},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0.1, 3},
      {"pow2.5", [](const Tensor& x) { return pow(x, 2.5); }, [](double x) { return std::pow(x, 2.5); }, 0.1, 3},
      {"pow-1.5", [](const Tensor& x) { return pow(x, -1.5); }, [](double x) { return std::pow(x, -1.5); }, 0.1, 3},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::fabs(x); }, 0.1, 2},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0.0; }, 0.1, 2},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, GeluApprox::Tanh); }, gelu_tanh_ref, -3, 3},
      {"gelu_erf", [](const Tensor& x) { return gelu(x, GeluApprox::Erf); }, gelu_erf_ref, -3, 3},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, -2, 2},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); }, -4, 4},
  };
  return all;
}

bool kinked(const Case& c) { return std::string(c.name) == "abs" || std::string(c.name) == "relu"; }

// A float64 leaf with |values| in [0.1, 1), every other element negative.
Tensor away_from_zero(const Shape& shape, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> v = Tensor::rand(shape, 0.1, 1.0, DType::Float64, &gen).to_vector();
  for (size_t i = 0; i < v.size(); i += 2) v[i] = -v[i];
  Tensor t = Tensor::from_vector(v, shape, DType::Float64);
  t.requires_grad_();
  return t;
}

Tensor input_for(const Case& c, const Shape& shape, uint64_t seed) {
  return kinked(c) ? away_from_zero(shape, seed) : leaf(shape, seed, c.low, c.high);
}

}  // namespace

TEST(Unary, ValuesMatchStdReference) {
  for (const Case& c : cases()) {
    Tensor x = input_for(c, {4, 5}, 7).detach();
    std::vector<double> xv = x.to_vector(), got = c.op(x).to_vector();
    ASSERT_EQ(got.size(), xv.size());
    for (size_t i = 0; i < xv.size(); ++i) EXPECT_NEAR(got[i], c.ref(xv[i]), 1e-14) << c.name << " at x = " << xv[i];
  }
}

TEST(Unary, ValuesByHand) {
  Tensor x = Tensor::from_vector({-2, -0.5, 0, 0.5, 2}, {5}, DType::Float64);
  EXPECT_EQ(neg(x).to_vector(), (std::vector<double>{2, 0.5, -0, -0.5, -2}));
  EXPECT_EQ(abs(x).to_vector(), (std::vector<double>{2, 0.5, 0, 0.5, 2}));
  EXPECT_EQ(relu(x).to_vector(), (std::vector<double>{0, 0, 0, 0.5, 2}));
  EXPECT_EQ(pow(x, 2).to_vector(), (std::vector<double>{4, 0.25, 0, 0.25, 4}));
  EXPECT_EQ(pow(x, 3).to_vector(), (std::vector<double>{-8, -0.125, 0, 0.125, 8}));
  Tensor one = Tensor::scalar(1.0, DType::Float64);
  EXPECT_NEAR(gelu(one, GeluApprox::Erf).item(), 0.8413447460685429, 1e-15);  // Φ(1)
  EXPECT_NEAR(gelu(one, GeluApprox::Tanh).item(), 0.8411919906082768, 1e-15);
  EXPECT_NEAR(sigmoid(one).item(), 0.7310585786300049, 1e-15);
  // sigmoid saturates without NaN in both directions and both dtypes
  for (DType dt : {DType::Float32, DType::Float64}) {
    auto s = sigmoid(Tensor::from_vector({-1000, 1000}, {2}, dt)).to_vector();
    EXPECT_EQ(s, (std::vector<double>{0, 1}));
  }
}

TEST(Unary, Float32MatchesFloat64) {
  for (const Case& c : cases()) {
    Tensor x64 = input_for(c, {6, 7}, 11).detach();
    Tensor x32 = x64.to(DType::Float32);
    // compare against float64 at the float32-rounded inputs
    std::vector<double> ref = c.op(x32.to(DType::Float64)).to_vector(), got = c.op(x32).to_vector();
    EXPECT_EQ(c.op(x32).dtype(), DType::Float32);
    for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-6 * (1 + std::fabs(ref[i]))) << c.name;
  }
}

TEST(Unary, GradientAtKinkIsZero) {
  Tensor x = Tensor::zeros({3}, DType::Float64);
  x.requires_grad_();
  sum(abs(x) + relu(x)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 0, 0}));
}

TEST(Unary, PowZeroExponentGradientIsZero) {  // x^0 = 1 is constant, even at x = 0
  Tensor x = Tensor::from_vector({0, 2}, {2}, DType::Float64);
  x.requires_grad_();
  sum(pow(x, 0.0)).backward();
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 0}));
}

TEST(Unary, GraphOnlyWhenNeeded) {
  Tensor x = leaf({2, 2}, 41);
  EXPECT_TRUE(exp(x).requires_grad());
  EXPECT_FALSE(exp(x.detach()).requires_grad());
  NoGradGuard guard;
  EXPECT_FALSE(exp(x).requires_grad());
  EXPECT_FALSE(neg(x).requires_grad());
}

TEST(Unary, Errors) {
  Tensor idx = Tensor::from_indices({1, 2, 3}, {3});
  for (const Case& c : cases()) {
    std::string name = c.name;
    std::string op = name.substr(0, name.find_first_of("_0123456789-"));  // "pow2.5" -> "pow"
    EXPECT_MG_ERROR(c.op(idx), op + ": input must be float32 or float64, got int64 of shape [3]");
    EXPECT_MG_ERROR(c.op(Tensor()), op + ": input is an undefined tensor");
    EXPECT_MG_ERROR(c.op(Tensor::zeros({2}, DType::Bool)), op + ": input must be float32 or float64, got bool");
  }
}
