// Comparisons (eq, ne, lt, le, gt, ge and the scalar forms) and selection
// (masked_fill, where, clamp): values against naive loops, broadcasting,
// non-contiguous inputs, float32 against float64, errors (gradient checks:
// the op table, tests/ops/op_table.cpp).
#include <cmath>
#include <functional>
#include <limits>

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

namespace {

using CompareFn = Tensor (*)(const Tensor&, const Tensor&);

struct CompareCase {
  const char* name;
  CompareFn op;
  std::function<bool(double, double)> ref;
};

const std::vector<CompareCase>& compare_cases() {
  static const std::vector<CompareCase> all = {
      {"eq", eq, [](double a, double b) { return a == b; }}, {"ne", ne, [](double a, double b) { return a != b; }},
      {"lt", lt, [](double a, double b) { return a < b; }},  {"le", le, [](double a, double b) { return a <= b; }},
      {"gt", gt, [](double a, double b) { return a > b; }},  {"ge", ge, [](double a, double b) { return a >= b; }},
  };
  return all;
}

// Small integers as doubles, so that equal values occur often.
std::vector<double> small_ints(size_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> v = Tensor::rand({static_cast<int64_t>(n)}, -2, 3, DType::Float64, &gen).to_vector();
  for (double& x : v) x = std::floor(x);
  return v;
}

std::vector<int64_t> as_ints(const std::vector<double>& v) { return std::vector<int64_t>(v.begin(), v.end()); }

Tensor bool_tensor(const std::vector<double>& v, const Shape& shape) {
  return Tensor::from_vector(v, shape, DType::Bool);
}

}  // namespace

// a [2, 1, 3] against b [4, 1] -> [2, 4, 3], for float64 and int64 inputs.
TEST(Compare, ValuesBroadcast) {
  std::vector<double> av = small_ints(6, 1), bv = small_ints(4, 2);
  for (DType dt : {DType::Float64, DType::Int64}) {
    Tensor a =
        dt == DType::Int64 ? Tensor::from_indices(as_ints(av), {2, 1, 3}) : Tensor::from_vector(av, {2, 1, 3}, dt);
    Tensor b = dt == DType::Int64 ? Tensor::from_indices(as_ints(bv), {4, 1}) : Tensor::from_vector(bv, {4, 1}, dt);
    for (const CompareCase& c : compare_cases()) {
      Tensor out = c.op(a, b);
      EXPECT_EQ(out.dtype(), DType::Bool);
      ASSERT_EQ(out.shape(), (Shape{2, 4, 3}));
      std::vector<double> got = out.to_vector();
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 4; ++j)
          for (int k = 0; k < 3; ++k)
            EXPECT_EQ(got[(i * 4 + j) * 3 + k], c.ref(av[i * 3 + k], bv[j]) ? 1.0 : 0.0) << c.name;
    }
  }
}

TEST(Compare, ValuesByHand) {
  Tensor a = Tensor::from_vector({1, 2, 3}, {3}, DType::Float64);
  Tensor b = Tensor::from_vector({2, 2, 2}, {3}, DType::Float64);
  EXPECT_EQ(eq(a, b).to_vector(), (std::vector<double>{0, 1, 0}));
  EXPECT_EQ(ne(a, b).to_vector(), (std::vector<double>{1, 0, 1}));
  EXPECT_EQ(lt(a, b).to_vector(), (std::vector<double>{1, 0, 0}));
  EXPECT_EQ(le(a, b).to_vector(), (std::vector<double>{1, 1, 0}));
  EXPECT_EQ(gt(a, b).to_vector(), (std::vector<double>{0, 0, 1}));
  EXPECT_EQ(ge(a, b).to_vector(), (std::vector<double>{0, 1, 1}));
  // NaN compares unequal to everything, itself included
  Tensor n = Tensor::from_vector({NAN, 1}, {2}, DType::Float64);
  EXPECT_EQ(eq(n, n).to_vector(), (std::vector<double>{0, 1}));
  EXPECT_EQ(ne(n, n).to_vector(), (std::vector<double>{1, 0}));
}

TEST(Compare, NonContiguous) {
  Tensor a = Tensor::from_vector(small_ints(12, 3), {3, 4}, DType::Float64);
  Tensor b = Tensor::from_vector(small_ints(12, 4), {4, 3}, DType::Float64);
  Tensor at = transpose(a, 0, 1);  // [4, 3], non-contiguous
  std::vector<double> got = le(at, b).to_vector();
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(got[i * 3 + j], a.at({j, i}) <= b.at({i, j}) ? 1.0 : 0.0);
  EXPECT_EQ(le(at, b).to_vector(), le(contiguous(at), b).to_vector());
}

TEST(Compare, ValuesLarge) {  // enough elements for the parallel loops
  Tensor a = Tensor::randn({256, 256}, 0, 1, DType::Float64), b = Tensor::randn({256, 256}, 0, 1, DType::Float64);
  Tensor row = Tensor::randn({256}, 0, 1, DType::Float64);
  std::vector<double> av = a.to_vector(), bv = b.to_vector(), rv = row.to_vector();
  std::vector<double> same = lt(a, b).to_vector(), bcast = ge(a, row).to_vector(), scal = gt(a, 0.25).to_vector();
  for (size_t i = 0; i < av.size(); ++i) {
    ASSERT_EQ(same[i], av[i] < bv[i] ? 1.0 : 0.0);
    ASSERT_EQ(bcast[i], av[i] >= rv[i % 256] ? 1.0 : 0.0);
    ASSERT_EQ(scal[i], av[i] > 0.25 ? 1.0 : 0.0);
  }
}

TEST(Compare, ScalarForms) {
  Tensor x = Tensor::from_vector({-1, 0, 0.5, 2}, {2, 2}, DType::Float64);
  EXPECT_EQ(eq(x, 0.5).to_vector(), (std::vector<double>{0, 0, 1, 0}));
  EXPECT_EQ(lt(x, 0.5).to_vector(), (std::vector<double>{1, 1, 0, 0}));
  EXPECT_EQ(gt(x, 0.5).to_vector(), (std::vector<double>{0, 0, 0, 1}));
  EXPECT_EQ(gt(x, 0.5).shape(), (Shape{2, 2}));
  EXPECT_EQ(gt(transpose(x, 0, 1), 0.0).to_vector(), (std::vector<double>{0, 1, 0, 1}));
  // int64 against a fractional scalar is compared exactly, not truncated
  Tensor ids = Tensor::from_indices({-1, 0, 1, 2}, {4});
  EXPECT_EQ(lt(ids, 0.5).to_vector(), (std::vector<double>{1, 1, 0, 0}));
  EXPECT_EQ(gt(ids, 0.5).to_vector(), (std::vector<double>{0, 0, 1, 1}));
  EXPECT_EQ(eq(ids, 0.5).to_vector(), (std::vector<double>{0, 0, 0, 0}));
  EXPECT_EQ(eq(ids, 2).to_vector(), (std::vector<double>{0, 0, 0, 1}));
  EXPECT_EQ(eq(ids, 2).dtype(), DType::Bool);
}

TEST(Compare, Float32MatchesFloat64) {
  Tensor a32 = Tensor::randn({5, 6}, 0, 1, DType::Float32);
  Tensor b32 = Tensor::randn({6}, 0, 1, DType::Float32);
  Tensor a64 = a32.to(DType::Float64), b64 = b32.to(DType::Float64);
  for (const CompareCase& c : compare_cases())
    EXPECT_EQ(c.op(a32, b32).to_vector(), c.op(a64, b64).to_vector()) << c.name;
  EXPECT_EQ(lt(a32, 0.1).to_vector(), lt(a64, 0.1).to_vector());
  EXPECT_EQ(gt(a32, 0.1).to_vector(), gt(a64, 0.1).to_vector());
}

TEST(Compare, NotDifferentiable) {
  Tensor a = leaf({2, 3}, 5), b = leaf({3}, 6);
  for (const CompareCase& c : compare_cases()) {
    Tensor out = c.op(a, b);
    EXPECT_FALSE(out.requires_grad()) << c.name;
    EXPECT_EQ(out.grad_fn(), nullptr) << c.name;
  }
  EXPECT_FALSE(gt(a, 0.0).requires_grad());
}

TEST(Compare, Errors) {
  Tensor f = Tensor::zeros({2, 3}), i = Tensor::from_indices({1, 2, 3}, {3});
  for (const CompareCase& c : compare_cases()) {
    std::string op = c.name;
    EXPECT_MG_ERROR(c.op(f, Tensor::zeros({4})), op + ": shapes [2, 3] and [4] do not broadcast");
    EXPECT_MG_ERROR(c.op(f, Tensor::zeros({3}, DType::Float64)), op + ": dtypes differ");
    EXPECT_MG_ERROR(c.op(f, i), op + ": dtypes differ: float32 [2, 3] vs int64 [3]");
    EXPECT_MG_ERROR(c.op(Tensor(), f), op + ": first input is an undefined tensor");
    EXPECT_MG_ERROR(c.op(f, Tensor()), op + ": second input is an undefined tensor");
    Tensor m = Tensor::zeros({3}, DType::Bool);
    EXPECT_MG_ERROR(c.op(m, m), op + ": first input must be float32, float64 or int64, got bool of shape [3]");
  }
  EXPECT_MG_ERROR(eq(Tensor(), 1.0), "eq: input is an undefined tensor");
  EXPECT_MG_ERROR(lt(Tensor::zeros({2}, DType::Bool), 1.0), "lt: input must be float32, float64 or int64, got bool");
  EXPECT_MG_ERROR(gt(Tensor(), 0.0), "gt: input is an undefined tensor");
}

TEST(MaskedFill, Values) {
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64);
  Tensor row = bool_tensor({1, 0, 1}, {3});
  EXPECT_EQ(masked_fill(x, row, -7).to_vector(), (std::vector<double>{-7, 2, -7, -7, 5, -7}));
  Tensor col = bool_tensor({0, 1}, {2, 1});
  EXPECT_EQ(masked_fill(x, col, 0).to_vector(), (std::vector<double>{1, 2, 3, 0, 0, 0}));
  Tensor full = bool_tensor({0, 0, 1, 1, 0, 0}, {2, 3});
  std::vector<double> inf = masked_fill(x, full, -INFINITY).to_vector();
  EXPECT_EQ(inf, (std::vector<double>{1, 2, -INFINITY, -INFINITY, 5, 6}));
  // non-contiguous input: x^T is [3, 2]; the mask picks x^T's first column
  EXPECT_EQ(masked_fill(transpose(x, 0, 1), bool_tensor({1, 0}, {2}), 9).to_vector(),
            (std::vector<double>{9, 4, 9, 5, 9, 6}));
  EXPECT_EQ(masked_fill(x, row, -7).dtype(), DType::Float64);
}

TEST(MaskedFill, Float32MatchesFloat64) {
  Tensor x = Tensor::randn({4, 5}, 0, 1, DType::Float64);
  Tensor mask = gt(Tensor::randn({5}, 0, 1, DType::Float64), 0.0);
  auto ref = masked_fill(x, mask, -1e4).to_vector();
  auto got = masked_fill(x.to(DType::Float32), mask, -1e4).to_vector();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-6);
}

TEST(MaskedFill, GradientByHand) {
  Tensor x = leaf({2, 3}, 9);
  masked_fill(x, bool_tensor({1, 0, 0}, {3}), 5).backward(Tensor::full({2, 3}, 2.0, DType::Float64));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 2, 2, 0, 2, 2}));
}

TEST(MaskedFill, Errors) {
  Tensor x = Tensor::zeros({2, 3});
  Tensor m = Tensor::zeros({3}, DType::Bool);
  EXPECT_MG_ERROR(masked_fill(Tensor(), m, 0), "masked_fill: input is an undefined tensor");
  EXPECT_MG_ERROR(masked_fill(x, Tensor(), 0), "masked_fill: mask is an undefined tensor");
  EXPECT_MG_ERROR(masked_fill(Tensor::from_indices({1, 2, 3}, {3}), m, 0),
                  "masked_fill: input must be float32 or float64, got int64");
  EXPECT_MG_ERROR(masked_fill(x, Tensor::zeros({3}), 0), "masked_fill: mask must be bool, got float32 of shape [3]");
  EXPECT_MG_ERROR(masked_fill(x, Tensor::zeros({4}, DType::Bool), 0),
                  "masked_fill: shapes [2, 3] and [4] do not broadcast");
  EXPECT_MG_ERROR(masked_fill(Tensor::zeros({3}), Tensor::zeros({2, 3}, DType::Bool), 0),
                  "masked_fill: mask of shape [2, 3] does not broadcast to the input's shape [3]");
}

// cond [2, 1, 3], a [4, 1], b [3] -> [2, 4, 3]
TEST(Where, ValuesBroadcast) {
  std::vector<double> cv = {1, 0, 1, 0, 0, 1}, av = {1, 2, 3, 4}, bv = {-1, -2, -3};
  Tensor out = where(bool_tensor(cv, {2, 1, 3}), Tensor::from_vector(av, {4, 1}, DType::Float64),
                     Tensor::from_vector(bv, {3}, DType::Float64));
  ASSERT_EQ(out.shape(), (Shape{2, 4, 3}));
  std::vector<double> got = out.to_vector();
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 3; ++k) EXPECT_EQ(got[(i * 4 + j) * 3 + k], cv[i * 3 + k] ? av[j] : bv[k]);
}

TEST(Where, ValuesLarge) {  // enough elements for the parallel loops
  Tensor c = gt(Tensor::randn({256, 1}, 0, 1, DType::Float64), 0.0);
  Tensor a = Tensor::randn({256, 256}, 0, 1, DType::Float64), b = Tensor::randn({256}, 0, 1, DType::Float64);
  std::vector<double> cv = c.to_vector(), av = a.to_vector(), bv = b.to_vector(), got = where(c, a, b).to_vector();
  for (size_t i = 0; i < av.size(); ++i) ASSERT_EQ(got[i], cv[i / 256] ? av[i] : bv[i % 256]);
}

TEST(Where, ValuesNonContiguous) {
  Tensor a = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64);
  Tensor b = Tensor::from_vector({10, 20, 30, 40, 50, 60}, {3, 2}, DType::Float64);
  Tensor c = bool_tensor({1, 0, 0, 1, 1, 0}, {3, 2});
  // a^T = [[1, 4], [2, 5], [3, 6]]
  EXPECT_EQ(where(c, transpose(a, 0, 1), b).to_vector(), (std::vector<double>{1, 20, 30, 5, 3, 60}));
  EXPECT_EQ(where(transpose(c, 0, 1), a, transpose(b, 0, 1)).to_vector(), (std::vector<double>{1, 30, 3, 20, 5, 60}));
}

TEST(Where, Float32MatchesFloat64) {
  Tensor a = Tensor::randn({3, 4}, 0, 1, DType::Float64), b = Tensor::randn({4}, 0, 1, DType::Float64);
  Tensor c = gt(Tensor::randn({3, 1}, 0, 1, DType::Float64), 0.0);
  auto ref = where(c, a, b).to_vector();
  auto got = where(c, a.to(DType::Float32), b.to(DType::Float32)).to_vector();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-6);
}

TEST(Where, GradientByHand) {
  Tensor a = leaf({3}, 1), b = leaf({2, 1}, 2);
  Tensor c = bool_tensor({1, 0, 1, 0, 0, 1}, {2, 3});
  where(c, a, b).backward(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64));
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{1, 0, 3 + 6}));  // summed over rows where c
  EXPECT_EQ(b.grad().to_vector(), (std::vector<double>{2, 4 + 5}));     // summed over columns where !c
}

TEST(Where, GradientToOneSideOnly) {
  Tensor a = leaf({2, 2}, 3);
  Tensor b = Tensor::zeros({2, 2}, DType::Float64);
  where(bool_tensor({1, 0, 0, 1}, {2, 2}), a, b).backward(Tensor::ones({2, 2}, DType::Float64));
  EXPECT_EQ(a.grad().to_vector(), (std::vector<double>{1, 0, 0, 1}));
  EXPECT_FALSE(b.grad().defined());
}

TEST(Where, Errors) {
  Tensor c = Tensor::zeros({2, 3}, DType::Bool), a = Tensor::zeros({2, 3}), b = Tensor::zeros({3});
  EXPECT_MG_ERROR(where(Tensor(), a, b), "where: condition is an undefined tensor");
  EXPECT_MG_ERROR(where(Tensor::zeros({2, 3}), a, b), "where: condition must be bool, got float32 of shape [2, 3]");
  EXPECT_MG_ERROR(where(c, Tensor(), b), "where: first input is an undefined tensor");
  EXPECT_MG_ERROR(where(c, a, Tensor()), "where: second input is an undefined tensor");
  EXPECT_MG_ERROR(where(c, Tensor::from_indices({1, 2, 3}, {3}), b), "where: first input must be float32 or float64");
  EXPECT_MG_ERROR(where(c, a, Tensor::zeros({3}, DType::Float64)), "where: dtypes differ");
  EXPECT_MG_ERROR(where(c, Tensor::zeros({4}), b), "where: shapes [2, 3] and [4] do not broadcast");
  EXPECT_MG_ERROR(where(c, a, Tensor::zeros({2})), "where: shapes [2, 3] and [2] do not broadcast");
}

TEST(Clamp, Values) {
  Tensor x = Tensor::from_vector({-3, -1, -0.5, 0, 0.5, 1, 3}, {7}, DType::Float64);
  EXPECT_EQ(clamp(x, -1, 1).to_vector(), (std::vector<double>{-1, -1, -0.5, 0, 0.5, 1, 1}));
  EXPECT_EQ(clamp(x, 0, 0).to_vector(), (std::vector<double>{0, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(clamp(x, -INFINITY, 0.5).to_vector(), (std::vector<double>{-3, -1, -0.5, 0, 0.5, 0.5, 0.5}));
  Tensor m = Tensor::from_vector({1, 5, -5, 2, 0, 9}, {2, 3}, DType::Float64);
  EXPECT_EQ(clamp(transpose(m, 0, 1), 0, 4).to_vector(), (std::vector<double>{1, 2, 4, 0, 0, 4}));
}

TEST(Clamp, Float32MatchesFloat64) {
  Tensor x = Tensor::randn({5, 5}, 0, 1, DType::Float64);
  auto ref = clamp(x, -0.5, 0.75).to_vector();
  auto got = clamp(x.to(DType::Float32), -0.5, 0.75).to_vector();
  for (size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(got[i], ref[i], 1e-6);
}

TEST(Clamp, GradientByHand) {  // passes at the bounds, stops outside them
  Tensor x = Tensor::from_vector({-3, -1, 0, 1, 3}, {5}, DType::Float64);
  x.requires_grad_();
  clamp(x, -1, 1).backward(Tensor::full({5}, 2.0, DType::Float64));
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{0, 2, 2, 2, 0}));
}

TEST(Clamp, Errors) {
  Tensor x = Tensor::zeros({2});
  EXPECT_MG_ERROR(clamp(x, 1, 0), "clamp: expected low <= high, got low 1 and high 0");
  EXPECT_MG_ERROR(clamp(x, NAN, 0), "clamp: expected low <= high");
  EXPECT_MG_ERROR(clamp(Tensor(), 0, 1), "clamp: input is an undefined tensor");
  EXPECT_MG_ERROR(clamp(Tensor::from_indices({1, 2}, {2}), 0, 1), "clamp: input must be float32 or float64, got int64");
}
