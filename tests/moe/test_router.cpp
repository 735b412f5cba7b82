// Top-k and AC routers: sorted choices, scores summing to 1, the Switch
// balance loss against its definition, z-loss, gradchecks of both gates and
// both AC modes (detached: no gradient through W), errors.
#include <cmath>

#include "moe/router.h"
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

static InitOptions f64(uint64_t seed, Generator& g) {
  g = Generator(seed);
  return InitOptions{DType::Float64, &g};
}

TEST(TopKRouter, ChoicesScoresAndBalanceLoss) {
  Generator g;
  TopKRouter router({6, 4, 2, GateKind::Linear}, f64(1, g));
  Tensor x = Tensor::randn({10, 6}, 0, 1, DType::Float64);
  RouterOutput r = router.forward(x);
  ASSERT_EQ(r.indices.shape(), (Shape{10, 2}));
  for (int64_t i = 0; i < 10; ++i) {
    EXPECT_NEAR(r.scores.at({i, 0}) + r.scores.at({i, 1}), 1.0, 1e-12);
    EXPECT_GE(r.scores.at({i, 0}), r.scores.at({i, 1}));  // sorted
    EXPECT_EQ(r.indices.at({i, 0}), argmax(r.logits, 1).at({i}));
  }
  // balance loss: E * sum_e f_e P_e
  Tensor probs = softmax(r.logits, -1);
  std::vector<double> f(4, 0);
  for (int64_t e : r.indices.to_indices()) f[e] += 1.0 / 20;
  double ref = 0;
  for (int64_t e = 0; e < 4; ++e) ref += 4 * f[e] * mean(narrow(probs, 1, e, 1)).item();
  EXPECT_NEAR(r.balance_loss.item(), ref, 1e-12);
  // z-loss: mean of logsumexp^2
  double z = 0;
  for (int64_t i = 0; i < 10; ++i) {
    double s = 0;
    for (int64_t e = 0; e < 4; ++e) s += std::exp(r.logits.at({i, e}));
    z += std::log(s) * std::log(s) / 10;
  }
  EXPECT_NEAR(r.z_loss.item(), z, 1e-12);
}

TEST(TopKRouter, GradcheckLinearAndCosineGates) {
  for (GateKind gate : {GateKind::Linear, GateKind::Cosine})
    for (int64_t k : {1, 2}) {
      Generator g;
      auto router = std::make_shared<TopKRouter>(RouterConfig{4, 3, k, gate}, f64(2, g));
      Tensor x = leaf({5, 4}, 3);
      std::vector<Tensor> in{x};
      for (Tensor p : router->parameters()) in.push_back(p);
      EXPECT_GRADCHECK([router](const std::vector<Tensor>& v) {
        RouterOutput r = router->forward(v[0]);
        return add(sum(mul(r.scores, r.scores)), add(r.balance_loss, mul(r.z_loss, 0.1)));
      }, in);
    }
}

static Assignments previous_assignments() {
  return {Tensor::from_indices({0, 1, 1, 2, 2, 0, 0, 2, 1, 0, 2, 1, 0, 1, 1, 0}, {8, 2}),
          Tensor::randn({8, 2}, 0, 1, DType::Float64)};
}

TEST(ACRouter, DetachedModeHasNoGradientThroughW) {
  Generator g;
  ACConfig ac;
  ACRouter router({4, 3, 2, GateKind::Linear}, ac, f64(4, g));
  Tensor x = leaf({8, 4}, 5);
  Assignments prev = previous_assignments();
  sum(router.forward(x, prev).logits).backward();
  // the same logits with w as a constant
  Tensor labels = contiguous(squeeze(narrow(prev.indices, 1, 0, 1), 1));
  Tensor W = ac_cluster_weights(x.detach(), labels, 3, ac.stats);
  Tensor x2 = clone(x.detach());
  x2.requires_grad_();
  sum(router.gate_logits(ac_scale_gather(x2, W, labels))).backward();
  EXPECT_EQ(x.grad().to_vector(), x2.grad().to_vector());
  // the differentiable mode's gradient differs
  router.ac.differentiable = true;
  Tensor x3 = clone(x.detach());
  x3.requires_grad_();
  sum(router.forward(x3, prev).logits).backward();
  EXPECT_NE(x3.grad().to_vector(), x.grad().to_vector());
}

TEST(ACRouter, GradcheckBothModes) {
  for (bool differentiable : {false, true})
    for (int64_t mix : {1, 2}) {
      SCOPED_TRACE(std::string(differentiable ? "differentiable" : "detached") + " mix " + std::to_string(mix));
      Generator g;
      ACConfig ac;
      ac.differentiable = differentiable;
      ac.mix_m = mix;
      auto router = std::make_shared<ACRouter>(RouterConfig{4, 3, 2, GateKind::Cosine}, ac, f64(6, g));
      Assignments prev = previous_assignments();
      Tensor x = leaf({8, 4}, 7);
      Tensor prev_logits = leaf({8, 2}, 8);
      if (!differentiable) x.requires_grad_(false), prev_logits.requires_grad_(false);  // W is a constant then
      std::vector<Tensor> in{x, prev_logits};
      for (Tensor p : router->parameters()) in.push_back(p);
      Tensor idx = prev.indices;
      EXPECT_GRADCHECK([router, idx](const std::vector<Tensor>& v) {
        RouterOutput r = router->forward(v[0], {idx, v[1]});
        return add(sum(mul(r.scores, r.scores)), r.balance_loss);
      }, in);
    }
}

TEST(Router, Errors) {
  EXPECT_MG_ERROR(TopKRouter({4, 3, 4, GateKind::Linear}), "TopKRouter: k must be in [1, experts=3], got 4");
  EXPECT_MG_ERROR(TopKRouter({0, 3, 1, GateKind::Linear}), "dim and experts must be positive");
  EXPECT_MG_ERROR(TopKRouter({4, 3, 1, GateKind::Linear, 0.32, 0}), "embedding_gain and embedding_norm are for the cosine gate");
  EXPECT_MG_ERROR(TopKRouter({4, 3, 1, GateKind::Cosine, INFINITY, 1.5}), "must be finite and >= 0, got inf and 1.5");
  EXPECT_MG_ERROR(TopKRouter({4, 3, 1, GateKind::Cosine, 0.32, NAN}), "must be finite and >= 0");
  TopKRouter r({4, 3, 1, GateKind::Linear});
  EXPECT_MG_ERROR(r.forward(Tensor::zeros({2, 5})), "router: expected tokens [n, 4], got [2, 5]");
  ACConfig ac;
  ac.mix_m = 4;
  EXPECT_MG_ERROR(ACRouter({4, 3, 1, GateKind::Linear}, ac), "ACRouter: mix_m must be in [1, experts=3], got 4");
  ac.mix_m = 2;
  ACRouter a({4, 3, 1, GateKind::Linear}, ac);
  EXPECT_MG_ERROR(a.forward(Tensor::zeros({2, 4}), {}), "needs the previous MoE layer's assignments");
  EXPECT_MG_ERROR(a.forward(Tensor::zeros({2, 4}), {Tensor::from_indices({0, 1}, {2, 1}), Tensor::zeros({2, 1})}),
                  "mixing over the top 2 needs at least that many previous choices, got 1");
  EXPECT_MG_ERROR(a.forward(Tensor::zeros({2, 4}), {Tensor::from_indices({0, 1, 2, 0, 1, 2}, {3, 2}), Tensor::zeros({3, 2})}),
                  "do not match tokens");
  EXPECT_MG_ERROR(switch_balance_loss(Tensor::zeros({2, 3}), Tensor::from_indices({0, 3}, {2, 1})),
                  "expert index 3 outside [0, 3)");
}
