// The backward engine: accumulation on leaves, shared subgraphs, retain_graph,
// freed graphs, no-grad mode, detach, explicit upstream gradients, a leaf's
// gradient shared with nothing (it is taken over only when nothing else holds
// it), and
// gradcheck itself (it must catch a wrong backward and report the worst element).
#include <cmath>

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::leaf;

TEST(Autograd, ChainAndSharedSubgraph) {
  Tensor x = Tensor::from_vector({2.0}, {1}, DType::Float64);
  x.requires_grad_();
  Tensor y = x * x;      // x^2
  Tensor z = y * x + y;  // x^3 + x^2, y used twice
  sum(z).backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 3 * 4 + 2 * 2);
}

TEST(Autograd, LeafGradientsAccumulate) {
  Tensor x = leaf({3}, 1);
  sum(x * 2.0).backward();
  sum(x * 3.0).backward();
  for (double g : x.grad().to_vector()) EXPECT_DOUBLE_EQ(g, 5.0);
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, RetainGraphAndFreedGraph) {
  Tensor x = leaf({2}, 2);
  Tensor loss = sum(exp(x));
  loss.backward(Tensor(), /*retain_graph=*/true);
  std::vector<double> g1 = x.grad().to_vector();
  loss.backward();
  std::vector<double> g2 = x.grad().to_vector();
  for (size_t i = 0; i < g1.size(); ++i) EXPECT_DOUBLE_EQ(g2[i], 2 * g1[i]);
  EXPECT_MG_ERROR(loss.backward(), "already freed");
}

TEST(Autograd, NoGradAndDetach) {
  Tensor x = leaf({2}, 3);
  {
    NoGradGuard guard;
    Tensor y = x * 2.0;
    EXPECT_FALSE(y.requires_grad());
    EXPECT_FALSE(y.grad_fn());
  }
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.storage(), x.storage());
  Tensor y = x * d;  // d is a constant: dy/dx = d
  sum(y).backward();
  EXPECT_EQ(x.grad().to_vector(), d.to_vector());
  EXPECT_MG_ERROR(sum(d).backward(), "does not require grad");
}

TEST(Autograd, ExplicitUpstreamGradient) {
  Tensor x = leaf({2, 2}, 4);
  Tensor y = x * 3.0;
  Tensor g = Tensor::from_vector({1, 2, 3, 4}, {2, 2}, DType::Float64);
  y.backward(g);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3, 6, 9, 12}));
  Tensor y2 = x * 3.0;
  EXPECT_MG_ERROR(y2.backward(), "must have one element");
  EXPECT_MG_ERROR(y2.backward(Tensor::ones({3}, DType::Float64)), "gradient of shape [3]");
  EXPECT_MG_ERROR(y2.backward(Tensor::ones({2, 2}, DType::Int64)),
                  "backward: gradient of dtype int64 on cpu for a tensor of dtype float64 on cpu");
  // a float gradient of the other precision is converted, as PyTorch does
  x.zero_grad();
  (x * 3.0).backward(Tensor::ones({2, 2}));
  EXPECT_EQ(x.grad().dtype(), DType::Float64);
  EXPECT_EQ(x.grad().to_vector(), (std::vector<double>{3, 3, 3, 3}));
}

// A leaf with a zero-size dimension (contiguous strides [0, 1]) takes two
// gradients: accumulating into an empty tensor is a no-op, not an overlap.
TEST(Autograd, EmptyLeafAccumulates) {
  Tensor x = Tensor::zeros({3, 0}, DType::Float64).requires_grad_();
  (sum(x) + sum(x)).backward();
  (sum(x) * 2.0).backward();
  EXPECT_EQ(x.grad().shape(), (Shape{3, 0}));
  add_(Tensor::zeros({3, 0}), Tensor::zeros({3, 0}));
}

TEST(Autograd, BranchWithoutGradientStillReleasesOrder) {
  // x feeds a node whose output is only used through a non-differentiable path
  Tensor x = leaf({3}, 5);
  Tensor a = x * 2.0;
  Tensor b = a + 1.0;
  Tensor loss = sum(a * 3.0) + sum(b.detach());
  loss.backward();
  for (double g : x.grad().to_vector()) EXPECT_DOUBLE_EQ(g, 6.0);
}

TEST(Autograd, GradOfLeafItself) {
  Tensor x = leaf({}, 6);
  x.backward();
  EXPECT_DOUBLE_EQ(x.grad().item(), 1.0);
}

// Every leaf's gradient is its own buffer, whether the engine took the
// node's gradient over or copied it: the same dout for both inputs of add,
// views of one buffer from narrow's backward, the caller's own seed.
TEST(Autograd, LeafGradientsShareNothing) {
  Tensor a = leaf({4}, 7), b = leaf({4}, 8), seed = Tensor::ones({4}, DType::Float64);
  (a + b).backward(seed);
  add_(a.grad(), seed);  // a's gradient changed in place: b's and the seed stay
  EXPECT_EQ(b.grad().to_vector(), std::vector<double>(4, 1.0));
  EXPECT_EQ(seed.to_vector(), std::vector<double>(4, 1.0));
  EXPECT_FALSE(a.grad().storage() == b.grad().storage());

  Tensor c = leaf({6}, 9);
  Tensor parts = concat({narrow(c, 0, 0, 3) * 2.0, narrow(c, 0, 3, 3) * 3.0}, 0);
  sum(parts).backward();
  EXPECT_EQ(c.grad().to_vector(), std::vector<double>({2, 2, 2, 3, 3, 3}));

  Tensor d = leaf({3}, 10);
  d.backward(seed.to(DType::Float64).as_strided({3}, {1}, 0));
  add_(d.grad(), seed.as_strided({3}, {1}, 0));
  EXPECT_EQ(seed.to_vector(), std::vector<double>(4, 1.0));

  Tensor e = leaf({3}, 11);
  sum(e * 5.0).backward();  // mul's fresh gradient is taken over, then accumulated into
  sum(e * 1.0).backward();
  EXPECT_EQ(e.grad().to_vector(), std::vector<double>(3, 6.0));
}

// A deliberately wrong op: forward x^2, backward claims 3x.
static Tensor wrong_square(const Tensor& x) {
  Tensor out;
  {
    NoGradGuard g;
    out = x * x;
  }
  Tensor xd = x.detach();
  attach_backward(out, "wrong_square", {x}, [xd](const Tensor& dout) {
    return std::vector<Tensor>{dout * xd * 3.0};
  });
  return out;
}

TEST(Gradcheck, CatchesAWrongBackwardAndReportsTheWorstElement) {
  Tensor x = Tensor::from_vector({0.5, -1.0, 2.0}, {3}, DType::Float64);
  x.requires_grad_();
  GradcheckResult r = gradcheck([](const std::vector<Tensor>& in) { return wrong_square(in[0]); }, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.failed, 3);
  EXPECT_EQ(r.input, 0);
  ASSERT_EQ(r.index.size(), 1u);
  // analytic 3x vs numeric 2x: relative error 0.5 at every element
  EXPECT_NEAR(r.analytic / r.numeric, 1.5, 1e-6);
  EXPECT_NEAR(r.error, 0.5, 1e-6);
  EXPECT_NE(r.message.find("gradcheck failed: 3 of 3 elements"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("index [" + std::to_string(r.index[0]) + "]"), std::string::npos) << r.message;
  EXPECT_FALSE(x.grad().defined());  // gradcheck leaves the inputs' grads alone
}

TEST(Gradcheck, PassesOnACompositeFunctionOfSeveralInputs) {
  Tensor a = leaf({2, 3}, 7), b = leaf({3}, 8, 0.5, 1.5);
  Tensor c = Tensor::randn({2, 3}, 0, 1, DType::Float64);  // constant input, not checked
  GradcheckResult r = gradcheck(
      [](const std::vector<Tensor>& in) { return sum(tanh(in[0] * in[1] + in[2]) / in[1], {1}); }, {a, b, c});
  EXPECT_TRUE(r.ok) << r.message;
  EXPECT_EQ(r.checked, 9);
}

TEST(Gradcheck, Errors) {
  Tensor f32 = Tensor::zeros({2});
  f32.requires_grad_();
  auto id = [](const std::vector<Tensor>& in) { return in[0] * 1.0; };
  EXPECT_MG_ERROR(gradcheck(id, {f32}), "finite differences need float64");
  EXPECT_MG_ERROR(gradcheck(id, {Tensor::zeros({2}, DType::Float64)}), "no input requires grad");
  Tensor x = leaf({2}, 9);
  EXPECT_MG_ERROR(gradcheck(id, {x * 2.0}), "must be a leaf");
  GradcheckOptions bad;
  bad.eps = 0;
  EXPECT_MG_ERROR(gradcheck(id, {x}, bad), "eps must be positive");
  bad.eps = INFINITY;
  EXPECT_MG_ERROR(gradcheck(id, {x}, bad), "gradcheck: eps must be positive and finite, got inf");
  EXPECT_MG_ERROR(gradcheck(id, {Tensor()}), "gradcheck: input 0 is undefined");
  Tensor wide = expand(Tensor::zeros({1, 2}, DType::Float64), {3, 2});
  wide.requires_grad_();
  EXPECT_MG_ERROR(gradcheck(id, {wide}), "gradcheck: input 0 of shape [3, 2] has overlapping memory");
  EXPECT_MG_ERROR(gradcheck([](const std::vector<Tensor>&) { return Tensor(); }, {x}),
                  "gradcheck: the function returned an undefined tensor");
  EXPECT_MG_ERROR(gradcheck([](const std::vector<Tensor>& in) { return in[0].to(DType::Float32); }, {x}),
                  "gradcheck: the function must return float64, got float32");
  EXPECT_MG_ERROR(gradcheck([](const std::vector<Tensor>&) { return Tensor::ones({2}, DType::Float64); }, {x}),
                  "gradcheck: the output does not depend on any input that requires grad");
  int calls = 0;  // a function whose output changes shape between calls
  EXPECT_MG_ERROR(gradcheck([&calls](const std::vector<Tensor>& in) { return ++calls == 1 ? in[0] * 1.0 : sum(in[0]); },
                            {x}),
                  "gradcheck: the output's shape changed from [2] to [] between calls");
}
