// The MoE layer end to end: gradchecks with the top-k router (k = 1, 2), the
// AC router in both modes, capacity with dropping, scaled expert input;
// routing statistics; a token whose every slot is dropped outputs zero.
#include "moe/moe_layer.h"
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

static std::shared_ptr<MoELayer> layer(MoEConfig c, uint64_t seed) {
  static Generator g;
  g = Generator(seed);
  return std::make_shared<MoELayer>(c, InitOptions{DType::Float64, &g});
}

TEST(MoELayer, GradcheckTopK) {
  for (int64_t k : {1, 2})
    for (double cf : {0.0, 0.8}) {
      SCOPED_TRACE("k " + std::to_string(k) + " capacity " + std::to_string(cf));
      MoEConfig c;
      c.dim = 4, c.hidden = 5, c.experts = 3, c.k = k, c.capacity_factor = cf;
      auto m = layer(c, 1);
      std::vector<Tensor> in{leaf({7, 4}, 2)};
      for (Tensor p : m->parameters()) in.push_back(p);
      EXPECT_GRADCHECK([m](const std::vector<Tensor>& v) {
        MoEOutput o = m->forward(v[0]);
        return add(sum(mul(o.y, o.y)), o.balance_loss);
      }, in);
    }
}

TEST(MoELayer, GradcheckAC) {
  for (bool differentiable : {false, true})
    for (bool scale_input : {false, true}) {
      SCOPED_TRACE(std::string(differentiable ? "differentiable" : "detached") + (scale_input ? " scaled" : ""));
      MoEConfig c;
      c.dim = 4, c.hidden = 3, c.experts = 3, c.k = 2, c.use_ac = true;
      c.ac.differentiable = differentiable;
      c.scale_expert_input = scale_input;
      auto m = layer(c, 3);
      Assignments prev{Tensor::from_indices({0, 1, 1, 2, 2, 0, 0, 2, 1, 0, 2, 1}, {6, 2}),
                       Tensor::zeros({6, 2}, DType::Float64)};
      Tensor x = leaf({6, 4}, 4);
      if (!differentiable) x.requires_grad_(false);  // W depends on x without a gradient
      std::vector<Tensor> in{x};
      for (Tensor p : m->parameters()) in.push_back(p);
      EXPECT_GRADCHECK([m, prev](const std::vector<Tensor>& v) {
        MoEOutput o = m->forward(v[0], prev);
        return sum(mul(o.y, o.y));
      }, in);
    }
}

TEST(MoELayer, StatsAndAssignments) {
  MoEConfig c;
  c.dim = 8, c.hidden = 4, c.experts = 4, c.k = 2, c.capacity_factor = 0.5;
  auto m = layer(c, 5);
  MoEOutput o = m->forward(Tensor::randn({32, 8}, 0, 1, DType::Float64));
  int64_t routed = 0;
  for (int64_t n : m->last_stats.tokens_per_expert) {
    EXPECT_LE(n, 8);  // capacity ceil(0.5 * 32 * 2 / 4) = 8
    routed += n;
  }
  EXPECT_EQ(routed + m->last_stats.dropped, 64);
  EXPECT_EQ(o.assignments.indices.shape(), (Shape{32, 2}));
  MoEConfig ac = c;
  ac.use_ac = true, ac.capacity_factor = 0;
  auto a = layer(ac, 6);
  a->forward(Tensor::randn({32, 8}, 0, 1, DType::Float64), o.assignments);
  EXPECT_GT(a->last_stats.ac_max, a->last_stats.ac_min);
  EXPECT_NEAR(a->last_stats.ac_mean, 1.0, 1e-9);  // per-feature scaling: mean 1
}

TEST(MoELayer, FullyDroppedTokenOutputsZero) {
  MoEConfig c;
  c.dim = 2, c.hidden = 2, c.experts = 2, c.k = 1, c.capacity_factor = 0.01;  // capacity 1
  auto m = layer(c, 7);
  Tensor y = m->forward(Tensor::randn({6, 2}, 0, 1, DType::Float64)).y;
  int64_t kept = 0, zero_rows = 0;
  for (int64_t n : m->last_stats.tokens_per_expert) kept += n;
  EXPECT_GE(kept, 1);
  EXPECT_LE(kept, 2);  // at most one token per expert
  EXPECT_EQ(kept + m->last_stats.dropped, 6);
  for (int64_t i = 0; i < 6; ++i) zero_rows += y.at({i, 0}) == 0 && y.at({i, 1}) == 0;
  EXPECT_EQ(zero_rows, 6 - kept);  // the dropped tokens' rows are zero, the kept ones' are not
}

TEST(MoELayer, Errors) {
  MoEConfig c;
  EXPECT_MG_ERROR(MoELayer{c}, "MoELayer: dim, hidden and experts must be positive");
  c.dim = 4, c.hidden = 4, c.experts = 2, c.k = 1;
  MoELayer m(c);
  EXPECT_MG_ERROR(m.forward(Tensor::zeros({3, 5})), "MoELayer: expected tokens [n, 4], got [3, 5]");
}
