// dropout: the kept fraction on a large tensor, scaling of kept values, the
// mask being a function of the generator's seed and counters only (same seed,
// same mask; independent of layout and thread count), identity in eval mode,
// p = 1, the gradient through the mask and errors (gradient checks: the op
// table, tests/ops/op_table.cpp); the integer form of the keep test equals
// the double one, at p on the draws' own grid too.
#include <cmath>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

TEST(Dropout, KeptFractionAndScale) {
  const double p = 0.3;
  const int64_t n = 200000;
  Generator gen(7);
  Tensor x = Tensor::full({n / 100, 100}, 2.0, DType::Float64);
  std::vector<double> out = dropout(x, p, true, &gen).to_vector();
  int64_t kept = 0;
  for (double v : out) {
    if (v != 0.0) {
      ++kept;
      EXPECT_DOUBLE_EQ(v, 2.0 / (1.0 - p));
    }
  }
  // binomial: standard deviation sqrt(n p (1-p)) ~ 205 elements
  EXPECT_NEAR(static_cast<double>(kept) / n, 1.0 - p, 0.005);
  EXPECT_EQ(gen.offset(), static_cast<uint64_t>(n));  // took exactly numel counters
}

TEST(Dropout, MaskFollowsGeneratorCounters) {
  Tensor x = Tensor::randn({50, 40}, 0, 1, DType::Float64);
  Generator g1(11), g2(11), g3(12);
  std::vector<double> a = dropout(x, 0.5, true, &g1).to_vector();
  EXPECT_EQ(a, dropout(x, 0.5, true, &g2).to_vector());  // same seed, same mask
  EXPECT_NE(a, dropout(x, 0.5, true, &g3).to_vector());  // other seed
  EXPECT_NE(a, dropout(x, 0.5, true, &g1).to_vector());  // next counters
  // element i kept iff random_uniform(seed, first + i) >= p
  std::vector<double> xv = x.to_vector();
  for (size_t i = 0; i < xv.size(); ++i)
    EXPECT_EQ(a[i], random_uniform(11, i) >= 0.5 ? xv[i] * 2.0 : 0.0) << "element " << i;
  // the mask follows the logical (row-major) order, not the memory layout
  Generator g4(11);
  Tensor xt = contiguous(transpose(x, 0, 1));
  EXPECT_EQ(dropout(transpose(xt, 0, 1), 0.5, true, &g4).to_vector(), a);
  // the default generator is used when none is passed
  manual_seed(11);
  EXPECT_EQ(dropout(x, 0.5, true).to_vector(), a);
}

TEST(Dropout, IndependentOfThreadCount) {
  Tensor x = Tensor::randn({400, 300}, 0, 1, DType::Float32);
  Generator g1(5), g2(5);
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<double> one = dropout(x, 0.2, true, &g1).to_vector();
  omp_set_num_threads(std::max(threads, 4));
  std::vector<double> many = dropout(x, 0.2, true, &g2).to_vector();
  omp_set_num_threads(threads);
  EXPECT_EQ(one, many);
#else
  EXPECT_EQ(dropout(x, 0.2, true, &g1).to_vector(), dropout(x, 0.2, true, &g2).to_vector());
#endif
}

TEST(Dropout, EvalModeAndZeroAreIdentity) {
  Tensor x = leaf({3, 4}, 1);
  Generator gen(1);
  EXPECT_TRUE(dropout(x, 0.5, false, &gen).same(x));
  EXPECT_TRUE(dropout(x, 0.0, true, &gen).same(x));
  EXPECT_EQ(gen.offset(), 0u);  // no counters taken
}

TEST(Dropout, PEqualsOneGivesZeros) {
  Tensor x = leaf({3, 4}, 2);
  Tensor out = dropout(x, 1.0, true);
  EXPECT_EQ(out.to_vector(), std::vector<double>(12, 0.0));
  sum(out).backward();
  EXPECT_EQ(x.grad().to_vector(), std::vector<double>(12, 0.0));
}

TEST(Dropout, GradientThroughMask) {
  Tensor x = leaf({20, 10}, 3);
  Generator gen(4);
  Tensor out = dropout(x, 0.25, true, &gen);
  sum(out).backward();
  std::vector<double> dx = x.grad().to_vector(), ov = out.to_vector();
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_DOUBLE_EQ(dx[i], ov[i] != 0.0 ? 1.0 / 0.75 : 0.0);
}

TEST(Dropout, Float32MatchesFloat64) {
  Tensor x = Tensor::randn({30, 20}, 0, 1, DType::Float64);
  Generator g1(9), g2(9);
  std::vector<double> a = dropout(x, 0.3, true, &g1).to_vector();
  std::vector<double> b = dropout(x.to(DType::Float32), 0.3, true, &g2).to_vector();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5);
}

TEST(Dropout, IntegerKeepTestEqualsTheDoubleOne) {
  const double grid = 1.0 / 9007199254740992.0;  // 2^-53, the draws' spacing
  std::vector<double> ps = {0.0, 1.0, 0.5, 0.1, 0.3, 0.7, 1 - grid, grid, 12345 * grid, 0.25 + grid};
  for (uint64_t c = 0; c < 50; ++c) ps.push_back(random_uniform(99, c));  // p exactly on some draws
  for (double p : ps) {
    const uint64_t threshold = dropout_threshold(p);
    for (uint64_t c = 0; c < 2000; ++c)
      ASSERT_EQ(dropout_keeps_bits(99, c, threshold), dropout_keeps(99, c, p)) << "p " << p << " counter " << c;
    // a draw exactly at p is kept, one step below is not
    const uint64_t k = static_cast<uint64_t>(p / grid);
    if (k > 0 && k < (uint64_t{1} << 53) && static_cast<double>(k) * grid == p) {
      EXPECT_GE(k, threshold);
      EXPECT_LT(k - 1, threshold);
    }
  }
}

TEST(Dropout, Errors) {
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_MG_ERROR(dropout(x, -0.1, true), "dropout: probability p must be in [0, 1], got -0.1");
  EXPECT_MG_ERROR(dropout(x, 1.5, false), "dropout: probability p must be in [0, 1], got 1.5");
  EXPECT_MG_ERROR(dropout(x, NAN, true), "dropout: probability p must be in [0, 1]");
  EXPECT_MG_ERROR(dropout(Tensor::zeros({2}, DType::Int64), 0.5, true), "dropout: input must be float32 or float64");
  EXPECT_MG_ERROR(dropout(Tensor(), 0.5, true), "dropout: input is an undefined tensor");
}
