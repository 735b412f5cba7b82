// Soft MoE: forward, dispatch and combine weights against a naive float64
// loop transcription of the equations (with and without AC), the sums of D and
// C, the handed-on assignments, float64 gradchecks of the whole layer (AC in
// both modes; the detached mode's x gradient against finite differences of the
// reference with w held fixed), float32 against float64, and errors.
#include <cmath>

#include "moe/soft_moe.h"
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;
using moegrad::testing::leaf;

namespace {

struct Naive {
  std::vector<double> y, L, D, C;  // y [b, m, d]; L, D, C [b, m, S]
};

double gelu_tanh(double v) { return 0.5 * v * (1 + std::tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))); }

// X / ‖X‖ per token of x [b, m, d], flattened to [b*m, d].
std::vector<double> normalized(const std::vector<double>& x, int64_t d) {
  std::vector<double> out(x.size());
  for (size_t t = 0; t < x.size() / d; ++t) {
    double q = 0;
    for (int64_t f = 0; f < d; ++f) q += x[t * d + f] * x[t * d + f];
    for (int64_t f = 0; f < d; ++f) out[t * d + f] = x[t * d + f] / std::sqrt(q + 1e-6);
  }
  return out;
}

// The rest of the forward from the (scaled) normalised tokens xt [b*m, d].
Naive naive(const SoftMoE& layer, const std::vector<double>& xt, int64_t b, int64_t m) {
  const SoftMoEConfig& c = layer.config;
  const int64_t d = c.dim, H = c.hidden, p = c.slots, S = c.experts * p;
  const std::vector<double> phi = layer.phi.to_vector(), w1 = layer.experts->w1.to_vector(), b1 = layer.experts->b1.to_vector(),
                            w2 = layer.experts->w2.to_vector(), b2 = layer.experts->b2.to_vector();
  const double scale = layer.scale.item();
  std::vector<double> phit(d * S);
  for (int64_t s = 0; s < S; ++s) {
    double q = 0;
    for (int64_t f = 0; f < d; ++f) q += phi[f * S + s] * phi[f * S + s];
    for (int64_t f = 0; f < d; ++f) phit[f * S + s] = scale * phi[f * S + s] / std::sqrt(q + 1e-6);
  }
  Naive r;
  r.L.assign(b * m * S, 0), r.D = r.C = r.L, r.y.assign(b * m * d, 0);
  for (int64_t t = 0; t < b * m; ++t)
    for (int64_t s = 0; s < S; ++s)
      for (int64_t f = 0; f < d; ++f) r.L[t * S + s] += xt[t * d + f] * phit[f * S + s];
  for (int64_t t = 0; t < b * m; ++t) {  // combine: softmax over the slots
    double den = 0;
    for (int64_t s = 0; s < S; ++s) den += std::exp(r.L[t * S + s]);
    for (int64_t s = 0; s < S; ++s) r.C[t * S + s] = std::exp(r.L[t * S + s]) / den;
  }
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t s = 0; s < S; ++s) {
      double den = 0;  // dispatch: softmax over the tokens
      for (int64_t i = 0; i < m; ++i) den += std::exp(r.L[(bi * m + i) * S + s]);
      for (int64_t i = 0; i < m; ++i) r.D[(bi * m + i) * S + s] = std::exp(r.L[(bi * m + i) * S + s]) / den;
      std::vector<double> xs(d, 0), h(H), ys(d);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t f = 0; f < d; ++f) xs[f] += r.D[(bi * m + i) * S + s] * xt[(bi * m + i) * d + f];
      const int64_t e = s / p;
      for (int64_t k = 0; k < H; ++k) {
        double a = b1[e * H + k];
        for (int64_t f = 0; f < d; ++f) a += w1[(e * H + k) * d + f] * xs[f];
        h[k] = gelu_tanh(a);
      }
      for (int64_t f = 0; f < d; ++f) {
        ys[f] = b2[e * d + f];
        for (int64_t k = 0; k < H; ++k) ys[f] += w2[(e * d + f) * H + k] * h[k];
      }
      for (int64_t i = 0; i < m; ++i)
        for (int64_t f = 0; f < d; ++f) r.y[(bi * m + i) * d + f] += r.C[(bi * m + i) * S + s] * ys[f];
    }
  return r;
}

// AC token weights w [b*m, d] on the normalised tokens: W from ac_cluster_weights (checked against its own
// reference in test_ac_weights.cpp), mixed by hand over the previous top `use` with the softmax of their logits.
std::vector<double> naive_ac(const SoftMoE& layer, const std::vector<double>& xt, const Assignments& prev) {
  const int64_t d = layer.config.dim, n = static_cast<int64_t>(xt.size()) / d, E = layer.config.experts;
  const int64_t cols = prev.indices.size(1), use = std::min(layer.config.mix_k, cols);
  const std::vector<int64_t> idx = prev.indices.to_indices();
  std::vector<int64_t> labels(n);
  for (int64_t i = 0; i < n; ++i) labels[i] = idx[i * cols];
  const std::vector<double> W =
      ac_cluster_weights(Tensor::from_vector(xt, {n, d}, DType::Float64), Tensor::from_indices(labels, {n}), E,
                         layer.config.ac)
          .to_vector();
  std::vector<double> w(n * d, 0);
  for (int64_t i = 0; i < n; ++i) {
    double den = 0;
    for (int64_t j = 0; j < use; ++j) den += std::exp(prev.logits.at({i, j}));
    for (int64_t j = 0; j < use; ++j) {
      const double mix = use == 1 ? 1.0 : std::exp(prev.logits.at({i, j})) / den;
      for (int64_t f = 0; f < d; ++f) w[i * d + f] += mix * W[idx[i * cols + j] * d + f];
    }
  }
  return w;
}

Naive reference(const SoftMoE& layer, const Tensor& x, const Assignments& prev = {}) {
  std::vector<double> xt = normalized(x.to_vector(), layer.config.dim);
  if (layer.config.use_ac) {
    const std::vector<double> w = naive_ac(layer, xt, prev);
    for (size_t j = 0; j < xt.size(); ++j) xt[j] *= w[j];
  }
  return naive(layer, xt, x.size(0), x.size(1));
}

InitOptions f64(uint64_t seed, Generator& g) {
  g = Generator(seed);
  return InitOptions{DType::Float64, &g};
}

SoftMoEConfig small_config(bool use_ac = false, bool differentiable = false, int64_t mix_k = 8) {
  SoftMoEConfig c;
  c.dim = 4, c.hidden = 3, c.experts = 2, c.slots = 2;
  c.use_ac = use_ac, c.differentiable = differentiable, c.mix_k = mix_k;
  return c;
}

// Previous assignments over n tokens: `cols` experts in [0, E) per token, random logits (float64 leaf).
Assignments previous(int64_t n, int64_t cols, int64_t E, uint64_t seed) {
  std::vector<int64_t> idx(n * cols);
  for (int64_t i = 0; i < n * cols; ++i) idx[i] = (i * 7 + i / cols + static_cast<int64_t>(seed)) % E;
  return {Tensor::from_indices(idx, {n, cols}), leaf({n, cols}, seed)};
}

// Checks a forward against the reference: y, L-derived D and C, the handed-on assignments.
void check_forward(const SoftMoE& layer, const SoftMoEOutput& out, const Naive& ref, int64_t n) {
  const int64_t S = layer.config.experts * layer.config.slots, k = std::min(layer.config.mix_k, S);
  expect_near(out.y.to_vector(), ref.y, 1e-12);
  expect_near(out.dispatch.to_vector(), ref.D, 1e-12);
  expect_near(out.combine.to_vector(), ref.C, 1e-12);
  ASSERT_EQ(out.assignments.indices.shape(), (Shape{n, k}));
  ASSERT_EQ(out.assignments.logits.shape(), (Shape{n, k}));
  for (int64_t t = 0; t < n; ++t) {
    int64_t best = 0;
    for (int64_t s = 1; s < S; ++s)
      if (ref.C[t * S + s] > ref.C[t * S + best]) best = s;
    EXPECT_EQ(out.assignments.indices.at({t, 0}), best / layer.config.slots);
    EXPECT_NEAR(out.assignments.logits.at({t, 0}), ref.L[t * S + best], 1e-12);
    for (int64_t j = 1; j < k; ++j) EXPECT_GE(out.assignments.logits.at({t, j - 1}), out.assignments.logits.at({t, j}));
  }
}

}  // namespace

TEST(SoftMoE, ForwardMatchesNaiveLoops) {
  struct Case {
    int64_t b, m, dim, hidden, experts, slots, mix_k;
  };
  for (Case cs : {Case{2, 3, 4, 3, 2, 2, 8}, Case{3, 5, 6, 5, 3, 2, 2}, Case{2, 1, 3, 2, 4, 1, 1}}) {
    SCOPED_TRACE("b=" + std::to_string(cs.b) + " m=" + std::to_string(cs.m));
    Generator g;
    SoftMoEConfig c;
    c.dim = cs.dim, c.hidden = cs.hidden, c.experts = cs.experts, c.slots = cs.slots, c.mix_k = cs.mix_k;
    SoftMoE layer(c, f64(1, g));
    Tensor x = Tensor::randn({cs.b, cs.m, cs.dim}, 0, 2, DType::Float64);
    check_forward(layer, layer.forward(x), reference(layer, x), cs.b * cs.m);
  }
}

TEST(SoftMoE, ForwardWithACMatchesNaiveLoops) {
  for (int64_t mix_k : {1, 2, 8})
    for (ACScaling scaling : {ACScaling::Global, ACScaling::PerFeature}) {
      SCOPED_TRACE("mix_k " + std::to_string(mix_k));
      Generator g;
      SoftMoEConfig c = small_config(true, false, mix_k);
      c.experts = 3, c.ac.scaling = scaling;
      SoftMoE layer(c, f64(2, g));
      Tensor x = Tensor::randn({2, 4, 4}, 0, 1, DType::Float64);
      Assignments prev = previous(8, 3, 3, 3);
      SoftMoEOutput out = layer.forward(x, prev);
      check_forward(layer, out, reference(layer, x, prev), 8);
      // AC changes the routing
      layer.config.use_ac = false;
      EXPECT_GT(max(abs(sub(layer.forward(x).combine, out.combine)), {}).item(), 1e-6);
    }
}

TEST(SoftMoE, DispatchColumnsAndCombineRowsSumToOne) {
  Generator g;
  SoftMoE layer({5, 4, 3, 2}, f64(3, g));
  SoftMoEOutput out = layer.forward(Tensor::randn({3, 7, 5}, 0, 1, DType::Float64));
  ASSERT_EQ(out.dispatch.shape(), (Shape{3, 7, 6}));
  for (double v : sum(out.dispatch, {1}).to_vector()) EXPECT_NEAR(v, 1.0, 1e-12);  // each slot over the tokens
  for (double v : sum(out.combine, {2}).to_vector()) EXPECT_NEAR(v, 1.0, 1e-12);   // each token over the slots
}

TEST(SoftMoE, HandedOnAssignmentsAreClampedToTheSlots) {
  Generator g;
  SoftMoEConfig c = small_config();  // 4 slots, mix_k 8
  SoftMoE layer(c, f64(4, g));
  SoftMoEOutput out = layer.forward(Tensor::randn({2, 3, 4}, 0, 1, DType::Float64));
  ASSERT_EQ(out.assignments.indices.shape(), (Shape{6, 4}));
  // every slot appears once: each expert exactly p = 2 times per token
  std::vector<int64_t> idx = out.assignments.indices.to_indices();
  for (int64_t t = 0; t < 6; ++t) {
    int64_t ones = 0;
    for (int64_t j = 0; j < 4; ++j) ones += idx[t * 4 + j];
    EXPECT_EQ(ones, 2);
  }
  // and they feed an AC layer
  SoftMoE next(small_config(true), f64(5, g));
  EXPECT_EQ(next.forward(Tensor::randn({2, 3, 4}, 0, 1, DType::Float64), out.assignments).y.shape(), (Shape{2, 3, 4}));
}

// y and the handed-on logits, so the gradient through both is checked.
static Tensor outputs(const SoftMoEOutput& o) {
  return concat({reshape(o.y, {-1}), reshape(o.assignments.logits, {-1})}, 0);
}

TEST(SoftMoE, GradcheckWithoutAC) {
  for (bool transposed : {false, true}) {
    Generator g;
    auto layer = std::make_shared<SoftMoE>(small_config(), f64(6, g));
    Tensor x = transposed ? leaf({3, 2, 4}, 7, -2, 2) : leaf({2, 3, 4}, 7, -2, 2);
    std::vector<Tensor> in{x};
    for (Tensor p : layer->parameters()) in.push_back(p);
    EXPECT_EQ(in.size(), 7u);
    EXPECT_GRADCHECK([layer, transposed](const std::vector<Tensor>& v) {
      return outputs(layer->forward(transposed ? transpose(v[0], 0, 1) : v[0]));
    }, in);
  }
}

TEST(SoftMoE, GradcheckACDifferentiable) {
  for (int64_t mix_k : {1, 2}) {
    SCOPED_TRACE("mix_k " + std::to_string(mix_k));
    Generator g;
    auto layer = std::make_shared<SoftMoE>(small_config(true, true, mix_k), f64(8, g));
    Assignments prev = previous(6, 2, 2, 9);
    Tensor idx = prev.indices;
    std::vector<Tensor> in{leaf({2, 3, 4}, 10, -2, 2), prev.logits};
    if (mix_k == 1) prev.logits.requires_grad_(false);  // not used: the labels alone
    for (Tensor p : layer->parameters()) in.push_back(p);
    EXPECT_GRADCHECK([layer, idx](const std::vector<Tensor>& v) {
      return outputs(layer->forward(v[0], {idx, v[1]}));
    }, in);
  }
}

// Detached (the paper): W and the mixing weights are constants. The parameters are gradchecked; x's gradient
// (through X̃ ⊙ w only) is compared with finite differences of the reference with w held fixed; the previous
// logits get no gradient.
TEST(SoftMoE, GradcheckACDetached) {
  Generator g;
  auto layer = std::make_shared<SoftMoE>(small_config(true, false, 2), f64(11, g));
  Assignments prev = previous(6, 2, 2, 12);
  Tensor x = leaf({2, 3, 4}, 13, -2, 2);
  Tensor x_const = x.detach();
  EXPECT_GRADCHECK([layer, prev, x_const](const std::vector<Tensor>&) {
    return outputs(layer->forward(x_const, prev));
  }, layer->parameters());

  Tensor R = Tensor::randn({2, 3, 4}, 0, 1, DType::Float64);
  sum(mul(layer->forward(x, prev).y, R)).backward();
  EXPECT_FALSE(prev.logits.grad().defined());
  const std::vector<double> xv = x.to_vector(), r = R.to_vector(), dx = x.grad().to_vector();
  const std::vector<double> w = naive_ac(*layer, normalized(xv, 4), prev);  // held fixed
  auto loss = [&](std::vector<double> xs) {
    std::vector<double> xt = normalized(xs, 4);
    for (size_t j = 0; j < xt.size(); ++j) xt[j] *= w[j];
    const std::vector<double> y = naive(*layer, xt, 2, 3).y;
    double l = 0;
    for (size_t j = 0; j < y.size(); ++j) l += y[j] * r[j];
    return l;
  };
  for (size_t j = 0; j < xv.size(); ++j) {
    std::vector<double> hi = xv, lo = xv;
    hi[j] += 1e-6, lo[j] -= 1e-6;
    EXPECT_NEAR(dx[j], (loss(hi) - loss(lo)) / 2e-6, 1e-6) << "x element " << j;
  }
}

TEST(SoftMoE, Float32AgreesWithFloat64) {
  for (bool use_ac : {false, true}) {
    Generator g;
    SoftMoE l64(small_config(use_ac, false, 2), f64(14, g));
    SoftMoE l32(small_config(use_ac, false, 2));
    std::vector<Tensor> p64 = l64.parameters(), p32 = l32.parameters();
    for (size_t i = 0; i < p64.size(); ++i) p32[i].copy_(p64[i]);
    Tensor x = Tensor::randn({2, 3, 4}, 0, 1, DType::Float64);
    Assignments prev = previous(6, 2, 2, 15);
    prev.logits = prev.logits.detach();
    SoftMoEOutput o64 = l64.forward(x, prev);
    SoftMoEOutput o32 = l32.forward(x.to(DType::Float32), {prev.indices, prev.logits.to(DType::Float32)});
    EXPECT_EQ(o32.y.dtype(), DType::Float32);
    expect_near(o32.y.to_vector(), o64.y.to_vector(), 1e-5);
    EXPECT_EQ(o32.assignments.indices.to_indices(), o64.assignments.indices.to_indices());
  }
}

TEST(SoftMoE, Errors) {
  EXPECT_MG_ERROR(SoftMoE({0, 3, 2, 2}), "SoftMoE: dim, hidden, experts and slots must be positive, got 0, 3, 2, 2");
  EXPECT_MG_ERROR(SoftMoE({4, 3, 2, 0}), "SoftMoE: dim, hidden, experts and slots must be positive");
  SoftMoEConfig c = small_config(true);
  c.mix_k = 0;
  EXPECT_MG_ERROR(SoftMoE{c}, "SoftMoE: mix_k must be at least 1, got 0");
  c = small_config(true);
  c.ac.eps = 0;
  EXPECT_MG_ERROR(SoftMoE{c}, "SoftMoE: AC eps must be positive and finite, got 0");

  SoftMoE plain(small_config());
  EXPECT_MG_ERROR(plain.forward(Tensor::zeros({6, 4})), "SoftMoE: expected x [b, m, 4] with b, m > 0, got [6, 4]");
  EXPECT_MG_ERROR(plain.forward(Tensor::zeros({2, 3, 5})), "got [2, 3, 5]");
  EXPECT_MG_ERROR(plain.forward(Tensor::zeros({2, 0, 4})), "got [2, 0, 4]");
  EXPECT_MG_ERROR(plain.forward(Tensor()), "got undefined");
  EXPECT_MG_ERROR(plain.forward(Tensor::zeros({2, 3, 4}, DType::Float64)),
                  "SoftMoE: x has dtype float64 but the parameters float32");

  SoftMoE ac(small_config(true, false, 2));
  Tensor x = Tensor::randn({2, 3, 4});
  EXPECT_MG_ERROR(ac.forward(x), "SoftMoE: AC needs the previous MoE layer's assignments");
  EXPECT_MG_ERROR(ac.forward(x, {Tensor::from_indices({0, 1, 0, 1}, {4, 1}), Tensor::zeros({4, 1})}),
                  "SoftMoE: previous assignments [4, 1] do not match tokens [6, 4]");
  Tensor idx = Tensor::from_indices({0, 1, 1, 0, 0, 0, 1, 1, 0, 1, 1, 0}, {6, 2});
  EXPECT_MG_ERROR(ac.forward(x, {idx, Tensor()}),
                  "SoftMoE: mixing over the previous top 2 needs their logits of shape [6, 2], got undefined");
  EXPECT_MG_ERROR(ac.forward(x, {idx, Tensor::zeros({6, 1})}), "got [6, 1]");
  EXPECT_MG_ERROR(ac.forward(x, {Tensor::from_indices({0, 1, 2, 0, 0, 0}, {6, 1}), Tensor()}),
                  "ac_cluster_weights: label 2 of token 2 outside [0, 2)");
}
