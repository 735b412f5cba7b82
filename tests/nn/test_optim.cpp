// SGD, Adam and AdamW: a few steps against updates worked out by hand or by a
// scalar reference loop, skipping parameters without a gradient, state
// allocated once, load_state, and the validation errors.
#include <cmath>
#include <memory>

#include "nn/optim.h"
#include "test_helpers.h"

using namespace moegrad;

namespace {

Tensor param(const std::vector<double>& values, DType dtype = DType::Float64) {
  Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, dtype);
  t.requires_grad_();
  return t;
}

// loss = sum(p^2), so the gradient is 2p; runs a real backward.
void backward_square(const Tensor& p) { sum(mul(p, p)).backward(); }

void expect_values(const Tensor& t, const std::vector<double>& expected, double tol) {
  std::vector<double> got = t.to_vector();
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], expected[i], tol) << "element " << i;
}

// Adam or AdamW on one scalar in double, written out from the formulas.
struct AdamReference {
  AdamOptions o;
  bool decoupled;
  double m = 0, v = 0;
  int t = 0;
  double step(double p, double g) {
    ++t;
    if (decoupled) p -= o.lr * o.weight_decay * p;
    else g += o.weight_decay * p;
    m = o.beta1 * m + (1 - o.beta1) * g;
    v = o.beta2 * v + (1 - o.beta2) * g * g;
    double mhat = m / (1 - std::pow(o.beta1, t)), vhat = v / (1 - std::pow(o.beta2, t));
    return p - o.lr * mhat / (std::sqrt(vhat) + o.eps);
  }
};

}  // namespace

TEST(SGD, PlainStepsByHand) {
  Tensor p = param({1.0, -2.0});
  SGD opt({p}, SGDOptions{0.25});
  backward_square(p);  // g = [2, -4]
  opt.step();
  expect_values(p, {0.5, -1.0}, 1e-15);  // p - 0.25 * 2p = p / 2
  opt.zero_grad();
  backward_square(p);
  opt.step();
  expect_values(p, {0.25, -0.5}, 1e-15);
  EXPECT_TRUE(opt.buffer_names().empty());
  EXPECT_EQ(opt.state()[0].step, 2);
}

TEST(SGD, MomentumAndWeightDecayByHand) {
  // lr 0.1, momentum 0.9, weight decay 0.5; loss = sum(p^2) so d = 2p + 0.5p = 2.5p.
  // step 1: d = 2.5,    buf = 2.5,                  p = 1 - 0.25    = 0.75
  // step 2: d = 1.875,  buf = 0.9*2.5 + 1.875 = 4.125,   p = 0.75 - 0.4125 = 0.3375
  // step 3: d = 0.84375, buf = 0.9*4.125 + 0.84375 = 4.55625, p = 0.3375 - 0.455625 = -0.118125
  Tensor p = param({1.0});
  SGD opt({p}, SGDOptions{0.1, 0.9, 0.5});
  const double expected[] = {0.75, 0.3375, -0.118125};
  const double buffers[] = {2.5, 4.125, 4.55625};
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    backward_square(p);
    opt.step();
    EXPECT_NEAR(p.item(), expected[s], 1e-14) << "step " << s + 1;
    EXPECT_NEAR(opt.state()[0].buffers[0].item(), buffers[s], 1e-14) << "step " << s + 1;
  }
  EXPECT_EQ(opt.buffer_names(), std::vector<std::string>{"momentum"});
}

TEST(Adam, FirstStepIsLrTimesSign) {
  // After one step m / (1 - beta1) = g and v / (1 - beta2) = g^2, so p -= lr * g / (|g| + eps).
  Tensor p = param({0.5, -3.0, 2.0});
  Adam opt({p}, AdamOptions{0.01});
  backward_square(p);
  opt.step();
  expect_values(p, {0.49, -2.99, 1.99}, 1e-9);
  expect_values(opt.state()[0].buffers[0], {0.1, -0.6, 0.4}, 1e-15);                // m = 0.1 g
  expect_values(opt.state()[0].buffers[1], {0.001, 0.036, 0.016}, 1e-15);          // v = 0.001 g^2
}

TEST(Adam, ThreeStepsMatchReference) {
  for (bool decoupled : {false, true}) {
    for (DType dtype : {DType::Float64, DType::Float32}) {
      AdamOptions o{0.05, 0.8, 0.95, 1e-6, 0.1};
      const std::vector<double> start = {1.0, -0.5, 0.25, 2.0};
      Tensor p = param(start, dtype);
      std::unique_ptr<Optimizer> opt;
      if (decoupled) opt = std::make_unique<AdamW>(std::vector<Tensor>{p}, o);
      else opt = std::make_unique<Adam>(std::vector<Tensor>{p}, o);
      std::vector<double> ref = start;
      std::vector<AdamReference> refs(start.size(), AdamReference{o, decoupled});
      for (int s = 0; s < 3; ++s) {
        opt->zero_grad();
        sum(mul(mul(p, p), p)).backward();  // g = 3 p^2: changes sign pattern and size between steps
        for (size_t i = 0; i < ref.size(); ++i) ref[i] = refs[i].step(ref[i], 3 * ref[i] * ref[i]);
        opt->step();
        expect_values(p, ref, dtype == DType::Float64 ? 1e-13 : 2e-6);
      }
      EXPECT_EQ(opt->state()[0].step, 3);
    }
  }
}

TEST(AdamW, DecoupledWeightDecayByHand) {
  // With a zero gradient AdamW only decays the weight: p *= (1 - lr * wd) each step,
  // while Adam's L2 term enters the gradient and moves p by about lr per step.
  Tensor pw = param({2.0}), pa = param({2.0});
  AdamW adamw({pw}, AdamOptions{0.1, 0.9, 0.999, 1e-8, 0.5});
  Adam adam({pa}, AdamOptions{0.1, 0.9, 0.999, 1e-8, 0.5});
  for (int s = 0; s < 3; ++s) {
    pw.set_grad(Tensor::zeros({1}, DType::Float64));
    pa.set_grad(Tensor::zeros({1}, DType::Float64));
    adamw.step();
    adam.step();
  }
  EXPECT_NEAR(pw.item(), 2.0 * 0.95 * 0.95 * 0.95, 1e-14);
  EXPECT_NEAR(pa.item(), 2.0 - 0.3, 1e-3);  // g = 0.5 p > 0 every step: three steps of about lr
  EXPECT_DOUBLE_EQ(AdamW({pw}).options().weight_decay, 0.01);
}

TEST(Optimizer, SkipsParametersWithoutGrad) {
  Tensor a = param({1.0}), b = param({1.0});
  Adam opt({a, b}, AdamOptions{0.1});
  backward_square(a);
  opt.step();
  EXPECT_NEAR(a.item(), 0.9, 1e-9);
  EXPECT_EQ(b.item(), 1.0);
  EXPECT_EQ(opt.state()[1].step, 0);
  EXPECT_TRUE(opt.state()[1].buffers.empty());
  opt.zero_grad();
  EXPECT_FALSE(a.grad().defined());
  EXPECT_FALSE(b.grad().defined());
}

TEST(Optimizer, GradOfOtherDtypeAndLayout) {
  Tensor p = Tensor::ones({2, 2}, DType::Float64);
  p.requires_grad_();
  SGD opt({p}, SGDOptions{0.5});
  Tensor g = Tensor::from_vector({1.0, 2.0, 3.0, 4.0}, {2, 2}, DType::Float32);
  p.set_grad(transpose(g, 0, 1));  // float32 and non-contiguous: [[1, 3], [2, 4]]
  opt.step();
  expect_values(p, {0.5, -0.5, 0.0, -1.0}, 1e-15);
}

TEST(Optimizer, StateAllocatedOnceThenNoAllocation) {
  Tensor p = param(std::vector<double>(1000, 1.0));
  Tensor g = Tensor::full({1000}, 0.5, DType::Float64);
  AdamW opt({p});
  p.set_grad(g);
  opt.step();
  const void* m = opt.state()[0].buffers[0].raw_data();
  const void* v = opt.state()[0].buffers[1].raw_data();
  AllocatorStats before = allocator_for(DeviceType::CPU).stats();
  for (int s = 0; s < 3; ++s) opt.step();
  AllocatorStats after = allocator_for(DeviceType::CPU).stats();
  EXPECT_EQ(after.system_allocs, before.system_allocs);
  EXPECT_EQ(after.cache_hits, before.cache_hits);  // no tensor allocated at all
  EXPECT_EQ(opt.state()[0].buffers[0].raw_data(), m);
  EXPECT_EQ(opt.state()[0].buffers[1].raw_data(), v);
  EXPECT_EQ(opt.state()[0].step, 4);
}

TEST(Optimizer, LoadStateContinuesTheRun) {
  Tensor a = param({1.0, -1.0, 0.5}), b = param({1.0, -1.0, 0.5});
  Adam first({a}, AdamOptions{0.1});
  for (int s = 0; s < 2; ++s) {
    first.zero_grad();
    backward_square(a);
    first.step();
  }
  b.detach().copy_(a);
  Adam second({b}, AdamOptions{0.1});
  second.load_state(first.state());
  EXPECT_NE(second.state()[0].buffers[0].raw_data(), first.state()[0].buffers[0].raw_data());  // copied
  for (Optimizer* opt : {static_cast<Optimizer*>(&first), static_cast<Optimizer*>(&second)}) {
    opt->zero_grad();
    backward_square(opt->params()[0]);
    opt->step();
  }
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_EQ(second.state()[0].step, 3);
}

TEST(Optimizer, Errors) {
  Tensor p = param({1.0, 2.0});
  EXPECT_MG_ERROR(SGD({p}, SGDOptions{0.0}), "SGD: lr must be > 0, got 0");
  EXPECT_MG_ERROR(Adam({p}, AdamOptions{-1e-3}), "Adam: lr must be > 0, got -0.001");
  EXPECT_MG_ERROR(AdamW({p}, AdamOptions{NAN}), "AdamW: lr must be > 0");
  EXPECT_MG_ERROR(SGD({p}, SGDOptions{0.1, 1.0}), "SGD: momentum must be in [0, 1), got 1");
  EXPECT_MG_ERROR(SGD({p}, SGDOptions{0.1, 0.0, -1.0}), "SGD: weight_decay must be >= 0, got -1");
  EXPECT_MG_ERROR(Adam({p}, AdamOptions{1e-3, 1.0}), "Adam: beta1 must be in [0, 1), got 1");
  EXPECT_MG_ERROR(Adam({p}, AdamOptions{1e-3, -0.1}), "Adam: beta1 must be in [0, 1), got -0.1");
  EXPECT_MG_ERROR(AdamW({p}, AdamOptions{1e-3, 0.9, 1.5}), "AdamW: beta2 must be in [0, 1), got 1.5");
  EXPECT_MG_ERROR(Adam({p}, AdamOptions{1e-3, 0.9, 0.999, 0.0}), "Adam: eps must be > 0, got 0");
  EXPECT_MG_ERROR(AdamW({p}, AdamOptions{1e-3, 0.9, 0.999, 1e-8, -0.01}), "AdamW: weight_decay must be >= 0");

  EXPECT_MG_ERROR(Adam(std::vector<Tensor>{}), "Adam: got an empty parameter list");
  EXPECT_MG_ERROR(Adam({p, Tensor()}), "Adam: parameter 1 is an undefined tensor");
  EXPECT_MG_ERROR(SGD({Tensor::from_indices({1, 2}, {2})}), "SGD: parameter 0 must be float32 or float64, got int64");
  EXPECT_MG_ERROR(Adam({p * 2.0}), "Adam: parameter 0 of shape [2] is not a leaf");
  Tensor wide = Tensor::zeros({2, 3}, DType::Float64);
  Tensor t = transpose(wide, 0, 1);
  t.requires_grad_();
  EXPECT_MG_ERROR(SGD({t}), "SGD: parameter 0 of shape [3, 2] is not contiguous");
  EXPECT_MG_ERROR(AdamW({p, p}), "AdamW: parameter 1 is the same tensor as parameter 0");

  Adam opt({p});
  EXPECT_MG_ERROR(opt.set_lr(-1), "Adam: lr must be >= 0, got -1");
  opt.set_lr(0);
  EXPECT_EQ(opt.lr(), 0);
  EXPECT_MG_ERROR(opt.load_state({}), "Adam: load_state got 0 entries for 1 parameters");
  EXPECT_MG_ERROR(opt.load_state({ParamState{-1, {}}}), "Adam: load_state: parameter 0 has a negative step count");
  EXPECT_MG_ERROR(opt.load_state({ParamState{2, {}}}), "Adam: load_state: parameter 0 at step 2 has 0 buffers, expected 2");
  EXPECT_MG_ERROR(opt.load_state({ParamState{1, {Tensor::zeros({2}, DType::Float64), Tensor::zeros({3}, DType::Float64)}}}),
                  "Adam: load_state: buffer 'v' of parameter 0 must be float64 [2] on cpu, got float64 [3] on cpu");
  EXPECT_MG_ERROR(opt.load_state({ParamState{1, {Tensor(), Tensor::zeros({2}, DType::Float64)}}}),
                  "buffer 'm' of parameter 0 must be float64 [2] on cpu, got an undefined tensor");
}
