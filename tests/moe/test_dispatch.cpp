// Routing plan invariants, permute / grouped linear / combine values against
// naive loops, the grouped products across tiles and thread counts, dropped
// slots, errors. Their gradient checks (with empty experts and dropped slots)
// and CUDA parity: the op table, tests/ops/op_table.cpp.
#include "moe/dispatch.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#include <algorithm>
#include <cmath>
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;
using moegrad::testing::leaf;
using moegrad::testing::random_assignment;

TEST(RoutingPlan, InvariantsWithoutCapacity) {
  Tensor idx = random_assignment(50, 2, 6, 1);
  PlanPtr p = make_routing_plan(idx, 6);
  std::vector<int64_t> e = idx.to_indices();
  const std::vector<int64_t> position = p->position.to_indices(), row_token = p->row_token.to_indices(),
                             row_slot = p->row_slot.to_indices();
  EXPECT_EQ(p->rows(), 100);
  EXPECT_EQ(p->dropped(), 0);
  for (int64_t s = 0; s < 100; ++s) {
    int64_t r = position[s];
    ASSERT_GE(r, 0);
    EXPECT_EQ(row_slot[r], s);         // permutation inverse exact
    EXPECT_EQ(row_token[r], s / 2);
    EXPECT_GE(r, p->offsets[e[s]]);       // row inside its expert's block
    EXPECT_LT(r, p->offsets[e[s] + 1]);
  }
  // within a block: choice-major, then token order
  for (int64_t x = 0; x < 6; ++x)
    for (int64_t r = p->offsets[x] + 1; r < p->offsets[x + 1]; ++r) {
      int64_t a = row_slot[r - 1], b = row_slot[r];
      EXPECT_TRUE(a % 2 < b % 2 || (a % 2 == b % 2 && a < b));
    }
}

TEST(RoutingPlan, CapacityDropsSecondChoicesFirst) {
  // 4 tokens all pick expert 0 first and expert 1 second; capacity = ceil(0.5*4*2/2) = 2
  Tensor idx = Tensor::from_indices({0, 1, 0, 1, 0, 1, 1, 0}, {4, 2});
  PlanPtr p = make_routing_plan(idx, 2, 0.5);
  EXPECT_EQ(p->capacity, 2);
  EXPECT_EQ(p->counts, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(p->dropped(), 4);
  // expert 0: first choices of tokens 0 and 1; expert 1: first choice of token 3, then token 0's second
  const std::vector<int64_t> position = p->position.to_indices();
  EXPECT_GE(position[0], 0);
  EXPECT_GE(position[2], 0);
  EXPECT_EQ(position[4], -1);
  EXPECT_GE(position[6], 0);
  EXPECT_GE(position[1], 0);
  EXPECT_EQ(position[3], -1);
}

TEST(Dispatch, ValuesAgainstLoops) {
  const int64_t n = 7, d = 3, o = 4, E = 3, k = 2;
  Tensor idx = random_assignment(n, k, E, 2);
  PlanPtr p = make_routing_plan(idx, E);
  Tensor x = Tensor::randn({n, d}, 0, 1, DType::Float64), W = Tensor::randn({E, o, d}, 0, 1, DType::Float64);
  Tensor b = Tensor::randn({E, o}, 0, 1, DType::Float64), s = Tensor::rand({n, k}, 0, 1, DType::Float64);
  Tensor y = moe_combine(grouped_linear(moe_permute(x, p), W, b, p), s, p);
  std::vector<int64_t> e = idx.to_indices();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t c = 0; c < o; ++c) {
      double ref = 0;
      for (int64_t j = 0; j < k; ++j) {
        double v = b.at({e[i * k + j], c});
        for (int64_t f = 0; f < d; ++f) v += W.at({e[i * k + j], c, f}) * x.at({i, f});
        ref += s.at({i, j}) * v;
      }
      EXPECT_NEAR(y.at({i, c}), ref, 1e-12);
    }
}

// Experts with more rows and outputs than one tile of the grouped products
// (128): forward and backward against per-expert matmuls, an expert without
// rows getting zero gradients, and the same bits with 1 and 4 threads.
TEST(Dispatch, GroupedLinearAcrossTiles) {
  const int64_t d = 5, o = 130, E = 3;
  std::vector<int64_t> experts(300, 0);  // expert 0: 200 rows (two tiles), expert 1: 100, expert 2: none
  for (int64_t i = 200; i < 300; ++i) experts[i] = 1;
  PlanPtr p = make_routing_plan(Tensor::from_indices(experts, {300, 1}), E);
  Tensor x = leaf({300, d}, 1), W = leaf({E, o, d}, 2), b = leaf({E, o}, 3);
  Generator gen(4);
  Tensor dy = Tensor::rand({300, o}, -1, 1, DType::Float64, &gen);
  auto run = [&]() {
    x.zero_grad(), W.zero_grad(), b.zero_grad();
    Tensor y = grouped_linear(x, W, b, p);  // rows already in expert order: the plan's permutation is the identity
    y.backward(dy);
    return std::vector<std::vector<double>>{y.to_vector(), x.grad().to_vector(), W.grad().to_vector(),
                                            b.grad().to_vector()};
  };
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  auto one = run();
  omp_set_num_threads(std::max(threads, 4));
  auto got = run();
  omp_set_num_threads(threads);
  EXPECT_EQ(one, got);
#else
  auto got = run();
#endif
  NoGradGuard no_grad;
  std::vector<double> y, dx, dW, db;
  for (int64_t e = 0; e < E; ++e) {
    const int64_t r0 = p->offsets[e], n = p->counts[e];
    Tensor W_e = reshape(narrow(W, 0, e, 1), {o, d}), xe = narrow(x, 0, r0, n), dye = narrow(dy, 0, r0, n);
    for (double v : add(matmul(xe, transpose(W_e, 0, 1)), reshape(narrow(b, 0, e, 1), {o})).to_vector()) y.push_back(v);
    for (double v : matmul(dye, W_e).to_vector()) dx.push_back(v);
    for (double v : matmul(transpose(dye, 0, 1), xe).to_vector()) dW.push_back(v);
    for (double v : sum(dye, {0}).to_vector()) db.push_back(v);
  }
  expect_near(got[0], y);
  expect_near(got[1], dx);
  expect_near(got[2], dW);
  expect_near(got[3], db);
  EXPECT_EQ(std::vector<double>(got[2].end() - o * d, got[2].end()), std::vector<double>(o * d, 0.0));
}

TEST(Dispatch, DroppedSlotsContributeZero) {
  Tensor idx = Tensor::from_indices({0, 0, 0}, {3, 1});
  PlanPtr p = make_routing_plan(idx, 2, 0.5);  // capacity ceil(0.5*3/2) = 1
  Tensor x = Tensor::ones({3, 2}, DType::Float64);
  Tensor y = moe_combine(moe_permute(x, p), Tensor::ones({3, 1}, DType::Float64), p);
  EXPECT_EQ(y.to_vector(), (std::vector<double>{1, 1, 0, 0, 0, 0}));
}

TEST(Dispatch, Errors) {
  Tensor idx = Tensor::from_indices({0, 3}, {2, 1});
  EXPECT_MG_ERROR(make_routing_plan(idx, 3), "make_routing_plan: expert index 3 at token 1 choice 0 outside [0, 3)");
  EXPECT_MG_ERROR(make_routing_plan(Tensor::zeros({2, 1}), 3), "expert_index must be int64");
  EXPECT_MG_ERROR(make_routing_plan(Tensor::from_indices({0}, {1}), 3), "must be [tokens, k]");
  for (double bad : {double(INFINITY), -double(INFINITY), double(NAN)})
    EXPECT_MG_ERROR(make_routing_plan(idx, 4, bad), "make_routing_plan: capacity_factor must be finite");
  EXPECT_EQ(make_routing_plan(idx, 4, -1.0)->capacity, 0);  // <= 0: no capacity
  EXPECT_EQ(make_routing_plan(idx, 4, 1e300)->capacity, 2);  // at most every slot: nothing dropped
  PlanPtr p = make_routing_plan(Tensor::from_indices({0, 1}, {2, 1}), 2);
  EXPECT_MG_ERROR(moe_permute(Tensor::zeros({3, 2}), p), "moe_permute: expected x of shape [2, d], got [3, 2]");
  EXPECT_MG_ERROR(grouped_linear(Tensor::zeros({2, 2}), Tensor::zeros({3, 2, 2}), Tensor(), p),
                  "grouped_linear: weight must be [2, out, in], got [3, 2, 2]");
  EXPECT_MG_ERROR(grouped_linear(Tensor::zeros({2, 2}), Tensor::zeros({2, 4, 2}), Tensor::zeros({2, 3}), p),
                  "grouped_linear: bias must be [2, 4]");
  EXPECT_MG_ERROR(moe_combine(Tensor::zeros({2, 2}), Tensor::zeros({2, 2}), p), "moe_combine: expected scores [2, 1]");
  EXPECT_MG_ERROR(moe_permute(Tensor::zeros({2, 2}), nullptr), "routing plan is null");
}
