// cross_entropy: values against a naive float64 reference, ignored targets
// (some and all), large logits, the hand-written gradient against
// (softmax - onehot) / count, float32 vs float64 and errors (gradient checks:
// the op table, tests/ops/op_table.cpp).
#include <cmath>

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;

namespace {

// Naive mean over non-ignored rows of -log softmax(x)[i, t_i], and its gradient.
struct CeRef {
  double loss = 0;
  std::vector<double> dlogits;  // row-major [N, C]
};

CeRef ref_cross_entropy(const Tensor& x, const std::vector<int64_t>& t, int64_t ignore_index = -100) {
  const int64_t N = x.shape()[0], C = x.shape()[1];
  CeRef r;
  r.dlogits.assign(N * C, 0.0);
  int64_t count = 0;
  for (int64_t i = 0; i < N; ++i) count += t[i] != ignore_index;
  for (int64_t i = 0; i < N; ++i) {
    if (t[i] == ignore_index) continue;
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < C; ++j) m = std::max(m, x.at({i, j}));
    for (int64_t j = 0; j < C; ++j) s += std::exp(x.at({i, j}) - m);
    r.loss += (m + std::log(s) - x.at({i, t[i]})) / count;
    for (int64_t j = 0; j < C; ++j) r.dlogits[i * C + j] = (std::exp(x.at({i, j}) - m) / s - (j == t[i])) / count;
  }
  return r;
}

// Loss value and gradient of cross_entropy at x (a fresh float64 leaf).
CeRef run(const Tensor& x, const std::vector<int64_t>& t, int64_t ignore_index = -100) {
  Tensor xl = x.detach();
  xl.requires_grad_();
  Tensor loss = cross_entropy(xl, Tensor::from_indices(t, {static_cast<int64_t>(t.size())}), ignore_index);
  EXPECT_EQ(loss.dim(), 0);
  loss.backward();
  return {loss.item(), xl.grad().to_vector()};
}

void expect_matches_ref(const Tensor& x, const std::vector<int64_t>& t, int64_t ignore_index = -100) {
  CeRef want = ref_cross_entropy(x, t, ignore_index), got = run(x, t, ignore_index);
  EXPECT_NEAR(got.loss, want.loss, 1e-12);
  expect_near(got.dlogits, want.dlogits, 1e-12);
}

}  // namespace

TEST(CrossEntropy, ValuesAndGradient) {
  expect_matches_ref(Tensor::randn({4, 5}, 0, 2, DType::Float64), {1, 0, 4, 2});
  expect_matches_ref(Tensor::randn({1, 3}, 0, 2, DType::Float64), {2});
}

TEST(CrossEntropy, HandValue) {
  // uniform logits over 4 classes: loss = log 4, gradient 1/4 - onehot
  CeRef r = run(Tensor::zeros({1, 4}, DType::Float64), {3});
  EXPECT_NEAR(r.loss, std::log(4.0), 1e-15);
  expect_near(r.dlogits, {0.25, 0.25, 0.25, -0.75}, 1e-15);
}

TEST(CrossEntropy, SomeTargetsIgnored) {
  Tensor x = Tensor::randn({5, 3}, 0, 2, DType::Float64);
  std::vector<int64_t> t = {1, -100, 2, -100, 0};
  expect_matches_ref(x, t);
  CeRef r = run(x, t);
  for (int64_t j = 0; j < 3; ++j) {
    EXPECT_EQ(r.dlogits[1 * 3 + j], 0.0);
    EXPECT_EQ(r.dlogits[3 * 3 + j], 0.0);
  }
  expect_matches_ref(x, {1, 0, 2, 2, 0}, 2);  // a custom ignore_index that is a class
}

TEST(CrossEntropy, AllTargetsIgnored) {
  CeRef r = run(Tensor::randn({3, 4}, 0, 1, DType::Float64), {-100, -100, -100});
  EXPECT_EQ(r.loss, 0.0);
  expect_near(r.dlogits, std::vector<double>(12, 0.0), 0);
  // no rows at all
  Tensor empty = Tensor::zeros({0, 4}, DType::Float64);
  EXPECT_EQ(cross_entropy(empty, Tensor::from_indices({}, {0})).item(), 0.0);
}

TEST(CrossEntropy, LargeLogits) {
  for (DType dt : {DType::Float32, DType::Float64}) {
    Tensor x = Tensor::from_vector({1000, 1001, 1002, -1000, -1001, -1002}, {2, 3}, dt);
    x.requires_grad_();
    Tensor loss = cross_entropy(x, Tensor::from_indices({0, 0}, {2}));
    const double z = 1 + std::exp(-1.0) + std::exp(-2.0);
    EXPECT_NEAR(loss.item(), (2 + std::log(z) + std::log(z)) / 2, 1e-5);
    loss.backward();
    expect_near(x.grad().to_vector(),
                {(std::exp(-2.0) / z - 1) / 2, std::exp(-1.0) / z / 2, 1 / z / 2, (1 / z - 1) / 2,
                 std::exp(-1.0) / z / 2, std::exp(-2.0) / z / 2},
                1e-5);
  }
}

TEST(CrossEntropy, NonContiguousLogits) {
  Tensor base = Tensor::randn({6, 4}, 0, 2, DType::Float64);
  Tensor x = transpose(base, 0, 1);  // [4, 6]
  CeRef want = ref_cross_entropy(x, {5, 0, 3, 1});
  EXPECT_NEAR(cross_entropy(x, Tensor::from_indices({5, 0, 3, 1}, {4})).item(), want.loss, 1e-12);
}

TEST(CrossEntropy, Float32MatchesFloat64) {
  // many rows so that rows are split across threads
  Tensor x = Tensor::randn({2000, 33}, 0, 3, DType::Float64);
  std::vector<int64_t> t(2000);
  for (int64_t i = 0; i < 2000; ++i) t[i] = i % 7 == 0 ? -100 : (i * 13) % 33;
  CeRef r64 = run(x, t), r32 = run(x.to(DType::Float32), t);
  EXPECT_NEAR(r32.loss, r64.loss, 1e-5);
  expect_near(r32.dlogits, r64.dlogits, 1e-7);
  expect_matches_ref(x, t);
}

TEST(CrossEntropy, Errors) {
  Tensor x = Tensor::zeros({3, 4});
  Tensor t = Tensor::from_indices({0, 1, 2}, {3});
  EXPECT_MG_ERROR(cross_entropy(Tensor(), t), "cross_entropy: logits is an undefined tensor");
  EXPECT_MG_ERROR(cross_entropy(Tensor::zeros({12}), t), "cross_entropy: logits must be 2-d [N, C], got shape [12]");
  EXPECT_MG_ERROR(cross_entropy(Tensor::zeros({3, 4, 1}), t), "cross_entropy: logits must be 2-d");
  EXPECT_MG_ERROR(cross_entropy(Tensor::zeros({3, 4}, DType::Int64), t), "cross_entropy: logits must be float32");
  EXPECT_MG_ERROR(cross_entropy(x, Tensor()), "cross_entropy: targets is an undefined tensor");
  EXPECT_MG_ERROR(cross_entropy(x, Tensor::zeros({3})), "cross_entropy: targets must be int64, got float32");
  EXPECT_MG_ERROR(cross_entropy(x, Tensor::from_indices({0, 1}, {2})),
                  "cross_entropy: targets must have shape [3] for logits of shape [3, 4], got [2]");
  EXPECT_MG_ERROR(cross_entropy(x, Tensor::from_indices({0, 1, 2}, {3, 1})), "got [3, 1]");
  EXPECT_MG_ERROR(cross_entropy(x, Tensor::from_indices({0, 1, 4}, {3})),
                  "cross_entropy: target 4 at position 2 is outside [0, 4)");
  EXPECT_MG_ERROR(cross_entropy(x, Tensor::from_indices({0, -1, 2}, {3})),
                  "cross_entropy: target -1 at position 1 is outside [0, 4)");
  EXPECT_MG_ERROR(cross_entropy(x, Tensor::from_indices({0, -100, 2}, {3}), 0),
                  "cross_entropy: target -100 at position 1");
}
