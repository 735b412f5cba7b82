// Attention: masked_softmax against a naive masked softmax (causal or not,
// T == S and T < S), masked entries exactly 0 and never exponentiated, float32
// vs float64 (its gradient checks: the op table, tests/ops/op_table.cpp);
// elliptical_metric against a naive loop and carrying
// no gradient; MultiHeadAttention against a naive per-head loop (plain and
// elliptical), causality, dropout, gradchecks of the whole module; errors.
#include <cmath>

#include "nn/attention.h"
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;
using moegrad::testing::leaf;

namespace {

// Naive masked softmax over the last dim of x [..., T, S], row-major order.
std::vector<double> ref_masked_softmax(const Tensor& x, bool causal) {
  const std::vector<double> v = contiguous(x).to_vector();
  const int64_t nt = x.size(-2), ns = x.size(-1);
  std::vector<double> out(v.size(), 0.0);
  for (size_t r = 0; r * ns < v.size(); ++r) {
    const int64_t t = static_cast<int64_t>(r) % nt;
    auto kept = [&](int64_t s) { return !causal || s <= t + ns - nt; };
    double m = -INFINITY, sum = 0;
    for (int64_t s = 0; s < ns; ++s)
      if (kept(s)) m = std::max(m, v[r * ns + s]);
    for (int64_t s = 0; s < ns; ++s)
      if (kept(s)) sum += std::exp(v[r * ns + s] - m);
    for (int64_t s = 0; s < ns; ++s)
      if (kept(s)) out[r * ns + s] = std::exp(v[r * ns + s] - m) / sum;
  }
  return out;
}

// Naive elliptical metric of v, v_prev ([nb*nh, T, Dh] flat, row-major): per
// row, the mean over tokens of |v - v_prev| divided by its max; with causal,
// one such metric per prefix 0..t ([nb*nh, T, Dh]).
std::vector<double> ref_metric(const std::vector<double>& v, const std::vector<double>& prev, int64_t rows,
                               int64_t nt, int64_t dh, bool causal = false) {
  const int64_t outs = causal ? nt : 1;
  std::vector<double> m(rows * outs * dh, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t o = 0; o < outs; ++o) {
      const int64_t last = causal ? o : nt - 1;
      double* mo = &m[(r * outs + o) * dh];
      double mx = 0;
      for (int64_t d = 0; d < dh; ++d) {
        for (int64_t t = 0; t <= last; ++t) mo[d] += std::abs(v[(r * nt + t) * dh + d] - prev[(r * nt + t) * dh + d]);
        mo[d] /= static_cast<double>(last + 1);
        mx = std::max(mx, mo[d]);
      }
      for (int64_t d = 0; d < dh; ++d) mo[d] = mx > 0 ? mo[d] / mx : 1.0;
    }
  return m;
}

struct RefAttention {
  std::vector<double> y, v;  // y [B, T, dim], v [B, H, T, Dh]
};

// The module's forward with plain loops, one head at a time (eval mode).
RefAttention ref_attention(const MultiHeadAttention& a, const Tensor& x, const Tensor& prev) {
  const int64_t nb = x.size(0), nt = x.size(1), dim = a.dim, nh = a.heads, dh = dim / nh;
  const std::vector<double> xv = x.to_vector(), w = a.qkv->weight.to_vector(), bw = a.qkv->bias.to_vector();
  const std::vector<double> pw = a.proj->weight.to_vector(), pb = a.proj->bias.to_vector();
  // q, k, v [B, H, T, Dh]: feature j of qkv(x) is part j / dim, head (j % dim) / Dh.
  std::vector<double> qkv[3];
  for (auto& p : qkv) p.assign(nb * nh * nt * dh, 0.0);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t t = 0; t < nt; ++t)
      for (int64_t j = 0; j < 3 * dim; ++j) {
        double s = bw[j];
        for (int64_t i = 0; i < dim; ++i) s += xv[(b * nt + t) * dim + i] * w[j * dim + i];
        const int64_t h = (j % dim) / dh, d = j % dh;
        qkv[j / dim][((b * nh + h) * nt + t) * dh + d] = s;
      }
  const std::vector<double> &q = qkv[0], &k = qkv[1], &v = qkv[2];
  // metric row of (bh, t): one per (sample, head), or one per token when causal
  std::vector<double> m(nb * nh * nt * dh, 1.0);
  if (a.elliptical && prev.defined()) m = ref_metric(v, prev.to_vector(), nb * nh, nt, dh, a.causal);
  const int64_t m_rows = a.elliptical && prev.defined() && !a.causal ? 1 : nt;
  std::vector<double> o(nb * nt * dim, 0.0);
  for (int64_t b = 0; b < nb; ++b)
    for (int64_t h = 0; h < nh; ++h) {
      const int64_t bh = b * nh + h;
      for (int64_t t = 0; t < nt; ++t) {
        const int64_t last = a.causal ? t : nt - 1;
        std::vector<double> p(last + 1);
        double mx = -INFINITY, sum = 0;
        for (int64_t s = 0; s <= last; ++s) {
          double dot = 0;
          for (int64_t d = 0; d < dh; ++d)
            dot += q[(bh * nt + t) * dh + d] * m[(bh * m_rows + (m_rows == 1 ? 0 : t)) * dh + d] *
                   k[(bh * nt + s) * dh + d];
          p[s] = dot / std::sqrt(static_cast<double>(dh));
          mx = std::max(mx, p[s]);
        }
        for (double& e : p) sum += (e = std::exp(e - mx));
        for (int64_t s = 0; s <= last; ++s)
          for (int64_t d = 0; d < dh; ++d) o[(b * nt + t) * dim + h * dh + d] += p[s] / sum * v[(bh * nt + s) * dh + d];
      }
    }
  RefAttention r{std::vector<double>(nb * nt * dim), v};
  for (int64_t bt = 0; bt < nb * nt; ++bt)
    for (int64_t j = 0; j < dim; ++j) {
      double s = pb[j];
      for (int64_t i = 0; i < dim; ++i) s += o[bt * dim + i] * pw[j * dim + i];
      r.y[bt * dim + j] = s;
    }
  return r;
}

std::shared_ptr<MultiHeadAttention> make_attention(int64_t dim, int64_t heads, bool causal, bool elliptical,
                                                   uint64_t seed, DType dtype = DType::Float64, double p = 0.0) {
  Generator g(seed);
  auto a = std::make_shared<MultiHeadAttention>(dim, heads, causal, p, InitOptions{dtype, &g});
  a->elliptical = elliptical;
  return a;
}

// x followed by every parameter of a: the inputs of a module gradcheck.
std::vector<Tensor> module_inputs(const Tensor& x, const MultiHeadAttention& a) {
  std::vector<Tensor> in{x};
  for (const Tensor& p : a.parameters()) in.push_back(p);
  return in;
}

}  // namespace

// ---- masked_softmax ----

TEST(MaskedSoftmax, ValuesAgainstNaive) {
  for (Shape shape : {Shape{2, 3, 4, 4}, Shape{2, 3, 5}, Shape{1, 1}, Shape{4, 1, 6}})
    for (bool causal : {false, true}) {
      SCOPED_TRACE(shape_str(shape) + (causal ? " causal" : ""));
      Tensor x = Tensor::randn(shape, 0, 3, DType::Float64);
      Tensor y = masked_softmax(x, causal);
      EXPECT_EQ(y.shape(), shape);
      expect_near(y.to_vector(), ref_masked_softmax(x, causal), 1e-12);
      if (!causal) expect_near(y.to_vector(), softmax(x, -1).to_vector(), 1e-12);
    }
}

TEST(MaskedSoftmax, MaskedEntriesExactlyZeroAndNeverExponentiated) {
  // T = 3, S = 5: row t keeps s <= t + 2. Masked entries hold inf and NaN,
  // which would poison the row if they were read.
  Tensor x = Tensor::randn({2, 3, 5}, 0, 1, DType::Float64);
  Tensor clean = clone(x);
  double* p = x.data<double>();
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t s = r % 3 + 3; s < 5; ++s) p[r * 5 + s] = (s % 2) ? INFINITY : NAN;
  Tensor xg = clone(x).requires_grad_();
  Tensor y = masked_softmax(xg, true);
  const std::vector<double> yv = y.to_vector(), want = ref_masked_softmax(clean, true);
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t s = 0; s < 5; ++s) {
      if (s > r % 3 + 2) EXPECT_EQ(yv[r * 5 + s], 0.0) << "row " << r << " col " << s;
      else EXPECT_NEAR(yv[r * 5 + s], want[r * 5 + s], 1e-12) << "row " << r << " col " << s;
    }
  y.backward(Tensor::randn({2, 3, 5}, 0, 1, DType::Float64));
  const std::vector<double> g = xg.grad().to_vector();
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t s = 0; s < 5; ++s) {
      if (s > r % 3 + 2) EXPECT_EQ(g[r * 5 + s], 0.0) << "row " << r << " col " << s;
      else EXPECT_TRUE(std::isfinite(g[r * 5 + s]));
    }
  // T == S: the first row keeps only its first entry, with probability 1.
  Tensor sq = masked_softmax(Tensor::randn({3, 3}, 0, 1, DType::Float64), true);
  EXPECT_EQ(sq.to_vector()[0], 1.0);
  EXPECT_EQ(sq.to_vector()[1], 0.0);
  EXPECT_EQ(sq.to_vector()[2], 0.0);
}

TEST(MaskedSoftmax, LargeInputsAndNonContiguous) {
  Tensor base = Tensor::randn({2, 5, 4}, 0, 300, DType::Float64);
  Tensor x = transpose(base, 1, 2);  // [2, 4, 5], not contiguous
  ASSERT_FALSE(x.is_contiguous());
  for (bool causal : {false, true}) {
    std::vector<double> y = masked_softmax(x, causal).to_vector();
    for (double v : y) EXPECT_TRUE(std::isfinite(v));
    expect_near(y, ref_masked_softmax(x, causal), 1e-12);
  }
}

TEST(MaskedSoftmax, Float32AgreesWithFloat64) {
  Tensor x = Tensor::randn({3, 4, 6}, 0, 2, DType::Float64);
  for (bool causal : {false, true}) {
    Tensor x32 = x.to(DType::Float32).requires_grad_(), x64 = clone(x).requires_grad_();
    Tensor dy = Tensor::randn({3, 4, 6}, 0, 1, DType::Float64);
    Tensor y32 = masked_softmax(x32, causal), y64 = masked_softmax(x64, causal);
    EXPECT_EQ(y32.dtype(), DType::Float32);
    expect_near(y32.to_vector(), y64.to_vector(), 1e-6);
    y32.backward(dy.to(DType::Float32));
    y64.backward(dy);
    expect_near(x32.grad().to_vector(), x64.grad().to_vector(), 1e-5);
  }
}

TEST(MaskedSoftmax, Errors) {
  EXPECT_MG_ERROR(masked_softmax(Tensor(), false), "masked_softmax");
  EXPECT_MG_ERROR(masked_softmax(Tensor::zeros({2, 2}, DType::Int64), false), "masked_softmax");
  EXPECT_MG_ERROR(masked_softmax(Tensor::zeros({4}, DType::Float64), false), "masked_softmax: expected scores");
  EXPECT_MG_ERROR(masked_softmax(Tensor::zeros({2, 4, 3}, DType::Float64), true), "masked_softmax: a causal mask");
  EXPECT_NO_THROW(masked_softmax(Tensor::zeros({2, 4, 3}, DType::Float64), false));
}

// ---- elliptical_metric ----

TEST(EllipticalMetric, ValuesAgainstNaive) {
  for (DType dtype : {DType::Float64, DType::Float32}) {
    Tensor v = Tensor::randn({2, 3, 5, 4}, 0, 1, dtype), prev = Tensor::randn({2, 3, 5, 4}, 0, 1, dtype);
    Tensor m = elliptical_metric(v, prev);
    EXPECT_EQ(m.shape(), (Shape{2, 3, 1, 4}));
    EXPECT_EQ(m.dtype(), dtype);
    const std::vector<double> want = ref_metric(v.to_vector(), prev.to_vector(), 6, 5, 4);
    expect_near(m.to_vector(), want, dtype == DType::Float64 ? 1e-12 : 1e-6);
    for (int64_t r = 0; r < 6; ++r) {  // each (sample, head) has its max at exactly 1
      double mx = 0;
      for (int64_t d = 0; d < 4; ++d) mx = std::max(mx, m.to_vector()[r * 4 + d]);
      EXPECT_EQ(mx, 1.0);
    }
  }
}

TEST(EllipticalMetric, NonContiguousAndZeroDifference) {
  Tensor base = Tensor::randn({2, 5, 3, 4}, 0, 1, DType::Float64);  // [B, T, H, Dh]
  Tensor v = transpose(base, 1, 2), prev = transpose(Tensor::randn({2, 5, 3, 4}, 0, 1, DType::Float64), 1, 2);
  ASSERT_FALSE(v.is_contiguous());
  expect_near(elliptical_metric(v, prev).to_vector(),
              ref_metric(contiguous(v).to_vector(), contiguous(prev).to_vector(), 6, 5, 4), 1e-12);
  // identical values: every max is 0, so m = 1
  for (double m : elliptical_metric(v, contiguous(v)).to_vector()) EXPECT_EQ(m, 1.0);
}

TEST(EllipticalMetric, CarriesNoGradient) {
  Tensor v = leaf({1, 2, 3, 2}, 4), prev = leaf({1, 2, 3, 2}, 5);
  Tensor m = elliptical_metric(v, prev);
  EXPECT_FALSE(m.requires_grad());
  EXPECT_EQ(m.grad_fn(), nullptr);
  // used inside a graph, it contributes nothing to v's gradient
  Tensor y = sum(mul(v, m));
  y.backward();
  expect_near(v.grad().to_vector(), expand(m, {1, 2, 3, 2}).to_vector(), 0);
  EXPECT_FALSE(prev.grad().defined());
}

TEST(EllipticalMetric, Errors) {
  Tensor v = Tensor::zeros({1, 2, 3, 2}, DType::Float64);
  EXPECT_MG_ERROR(elliptical_metric(Tensor(), v), "elliptical_metric: v is an undefined");
  EXPECT_MG_ERROR(elliptical_metric(v, Tensor()), "elliptical_metric: v_prev is an undefined");
  EXPECT_MG_ERROR(elliptical_metric(v, Tensor::zeros({1, 2, 3, 2}, DType::Int64)), "elliptical_metric");
  EXPECT_MG_ERROR(elliptical_metric(v, Tensor::zeros({1, 2, 3, 2})), "elliptical_metric: dtypes differ");
  EXPECT_MG_ERROR(elliptical_metric(v, Tensor::zeros({1, 2, 4, 2}, DType::Float64)),
                  "elliptical_metric: expected v_prev");
  EXPECT_MG_ERROR(elliptical_metric(Tensor::zeros({2, 3, 2}, DType::Float64), Tensor::zeros({2, 3, 2}, DType::Float64)),
                  "elliptical_metric: expected v [B, H, T, Dh]");
  Tensor empty = Tensor::zeros({1, 2, 0, 2}, DType::Float64);
  EXPECT_MG_ERROR(elliptical_metric(empty, empty), "T >= 1");
}

// ---- MultiHeadAttention ----

TEST(MultiHeadAttention, ParameterNames) {
  auto a = make_attention(8, 2, true, false, 1);
  std::vector<std::string> names;
  for (auto& [name, p] : a->named_parameters()) names.push_back(name);
  EXPECT_EQ(names, (std::vector<std::string>{"qkv.weight", "qkv.bias", "proj.weight", "proj.bias"}));
  EXPECT_EQ(a->qkv->weight.shape(), (Shape{24, 8}));
  EXPECT_EQ(a->proj->weight.shape(), (Shape{8, 8}));
}

TEST(MultiHeadAttention, ValuesAgainstNaive) {
  for (bool causal : {false, true})
    for (bool elliptical : {false, true}) {
      SCOPED_TRACE(std::string(causal ? "causal" : "full") + (elliptical ? " elliptical" : " plain"));
      auto a = make_attention(6, 3, causal, elliptical, 7);
      Tensor x = Tensor::randn({2, 4, 6}, 0, 1, DType::Float64);
      Tensor prev = Tensor::randn({2, 3, 4, 2}, 0, 1, DType::Float64);
      AttentionOutput o = a->forward(x, prev);
      RefAttention r = ref_attention(*a, x, prev);
      EXPECT_EQ(o.y.shape(), (Shape{2, 4, 6}));
      EXPECT_EQ(o.values.shape(), (Shape{2, 3, 4, 2}));
      expect_near(o.y.to_vector(), r.y, 1e-12);
      expect_near(o.values.to_vector(), r.v, 1e-12);
      // without prev_values (the first layer), elliptical attention is plain
      expect_near(a->forward(x).y.to_vector(), ref_attention(*a, x, Tensor()).y, 1e-12);
    }
  // the metric changes the output
  auto a = make_attention(6, 3, true, true, 7);
  Tensor x = Tensor::randn({2, 4, 6}, 0, 1, DType::Float64), prev = Tensor::randn({2, 3, 4, 2}, 0, 1, DType::Float64);
  EXPECT_GT(max(abs(a->forward(x, prev).y - a->forward(x).y), {}).item(), 1e-6);
}

TEST(MultiHeadAttention, Causality) {
  for (bool elliptical : {false, true}) {
  SCOPED_TRACE(elliptical ? "elliptical" : "plain");
  auto a = make_attention(4, 2, true, elliptical, 3);
  Tensor x = Tensor::randn({2, 5, 4}, 0, 1, DType::Float64);
  Tensor x2 = clone(x);
  narrow(x2, 1, 3, 2).copy_(Tensor::randn({2, 2, 4}, 0, 1, DType::Float64));  // change tokens 3 and 4
  // the previous layer's values: changed at the same future positions
  Tensor prev = Tensor::randn({2, 2, 5, 2}, 0, 1, DType::Float64), prev2 = clone(prev);
  narrow(prev2, 2, 3, 2).copy_(Tensor::randn({2, 2, 2, 2}, 0, 1, DType::Float64));
  const std::vector<double> y = a->forward(x, prev).y.to_vector(), y2 = a->forward(x2, prev2).y.to_vector();
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 5; ++t) {
      double diff = 0;
      for (int64_t j = 0; j < 4; ++j) diff = std::max(diff, std::abs(y[(b * 5 + t) * 4 + j] - y2[(b * 5 + t) * 4 + j]));
      if (t < 3) EXPECT_EQ(diff, 0.0) << "sample " << b << " token " << t;
      else EXPECT_GT(diff, 1e-6) << "sample " << b << " token " << t;
    }
  // without the mask the earlier tokens see the change
  a->causal = false;
  EXPECT_GT(max(abs(narrow(a->forward(x, prev).y - a->forward(x2, prev2).y, 1, 0, 3)), {}).item(), 1e-6);
  }
}

TEST(EllipticalMetric, CausalIsAPrefixStatistic) {
  Tensor v = Tensor::randn({2, 3, 5, 4}, 0, 1, DType::Float64), prev = Tensor::randn({2, 3, 5, 4}, 0, 1, DType::Float64);
  Tensor m = elliptical_metric(v, prev, true);
  EXPECT_EQ(m.shape(), (Shape{2, 3, 5, 4}));
  expect_near(m.to_vector(), ref_metric(v.to_vector(), prev.to_vector(), 6, 5, 4, true), 1e-12);
  // its last row is the non-causal metric
  expect_near(narrow(m, 2, 4, 1).to_vector(), elliptical_metric(v, prev).to_vector(), 1e-12);
}

TEST(MultiHeadAttention, Float32AgreesWithFloat64) {
  auto a64 = make_attention(8, 2, true, true, 11);
  auto a32 = make_attention(8, 2, true, true, 11, DType::Float32);
  auto p64 = a64->parameters(), p32 = a32->parameters();
  for (size_t i = 0; i < p64.size(); ++i) p32[i].copy_(p64[i]);
  Tensor x = Tensor::randn({2, 5, 8}, 0, 1, DType::Float64), prev = Tensor::randn({2, 2, 5, 4}, 0, 1, DType::Float64);
  AttentionOutput o64 = a64->forward(x, prev), o32 = a32->forward(x.to(DType::Float32), prev.to(DType::Float32));
  EXPECT_EQ(o32.y.dtype(), DType::Float32);
  expect_near(o32.y.to_vector(), o64.y.to_vector(), 1e-5);
  sum(mul(o64.y, o64.y)).backward();
  sum(mul(o32.y, o32.y)).backward();
  for (size_t i = 0; i < p64.size(); ++i) expect_near(p32[i].grad().to_vector(), p64[i].grad().to_vector(), 1e-4);
}

TEST(MultiHeadAttention, DropoutOnProbabilities) {
  auto a = make_attention(4, 2, true, false, 5, DType::Float64, 0.5);
  Tensor x = Tensor::randn({2, 3, 4}, 0, 1, DType::Float64);
  EXPECT_GT(max(abs(a->forward(x).y - a->forward(x).y), {}).item(), 1e-6);  // fresh masks each call
  a->eval();
  expect_near(a->forward(x).y.to_vector(), ref_attention(*a, x, Tensor()).y, 1e-12);
}

TEST(MultiHeadAttention, GradcheckPlain) {
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "full");
    auto a = make_attention(4, 2, causal, false, 21);
    EXPECT_GRADCHECK([a](const std::vector<Tensor>& in) { return a->forward(in[0]).y; },
                     module_inputs(leaf({2, 3, 4}, 22), *a));
    // values handed on are differentiable too
    EXPECT_GRADCHECK([a](const std::vector<Tensor>& in) { return a->forward(in[0]).values; },
                     module_inputs(leaf({2, 3, 4}, 23), *a));
  }
}

TEST(MultiHeadAttention, GradcheckElliptical) {
  for (bool causal : {false, true}) {
    SCOPED_TRACE(causal ? "causal" : "full");
    auto a = make_attention(4, 2, causal, true, 31);
    // The metric is detached, so the finite differences must not move it:
    // prev_values = v - c with v recomputed from the perturbed inputs keeps
    // |v - prev_values| = |c|, a fixed non-uniform metric. Had the metric a
    // gradient, the analytic result would differ.
    Tensor c = Tensor::randn({2, 2, 3, 2}, 0, 1, DType::Float64);
    EXPECT_GRADCHECK([a, c](const std::vector<Tensor>& in) {
      Tensor prev;
      {
        NoGradGuard no_grad;
        prev = a->forward(in[0]).values - c;
      }
      return a->forward(in[0], prev).y;
    }, module_inputs(leaf({2, 3, 4}, 32), *a));
    // a fixed prev_values: exact w.r.t. the output projection, which the metric does not see
    Tensor prev = Tensor::randn({2, 2, 3, 2}, 0, 1, DType::Float64);
    Tensor x = Tensor::randn({2, 3, 4}, 0, 1, DType::Float64);
    EXPECT_GRADCHECK([a, x, prev](const std::vector<Tensor>&) { return a->forward(x, prev).y; },
                     {a->proj->weight, a->proj->bias});
  }
}

TEST(MultiHeadAttention, Errors) {
  EXPECT_MG_ERROR(MultiHeadAttention(6, 4, true), "MultiHeadAttention: dim must be a positive multiple of heads");
  EXPECT_MG_ERROR(MultiHeadAttention(0, 1, true), "MultiHeadAttention");
  EXPECT_MG_ERROR(MultiHeadAttention(4, 0, true), "MultiHeadAttention");
  EXPECT_MG_ERROR(MultiHeadAttention(4, 2, true, 1.0), "Dropout");
  auto a = make_attention(4, 2, true, true, 1);
  EXPECT_MG_ERROR(a->forward(Tensor()), "MultiHeadAttention: expected x [B, T, 4], got undefined");
  EXPECT_MG_ERROR(a->forward(Tensor::zeros({3, 4}, DType::Float64)), "MultiHeadAttention: expected x [B, T, 4]");
  EXPECT_MG_ERROR(a->forward(Tensor::zeros({2, 3, 5}, DType::Float64)), "MultiHeadAttention: expected x [B, T, 4]");
  EXPECT_MG_ERROR(a->forward(Tensor::zeros({2, 3, 4})), "MultiHeadAttention: expected x of dtype float64");
  Tensor x = Tensor::zeros({2, 3, 4}, DType::Float64);
  EXPECT_MG_ERROR(a->forward(x, Tensor::zeros({2, 2, 4, 2}, DType::Float64)),
                  "MultiHeadAttention: expected prev_values");
  EXPECT_MG_ERROR(a->forward(x, Tensor::zeros({2, 3, 2}, DType::Float64)), "MultiHeadAttention: expected prev_values");
  EXPECT_MG_ERROR(a->forward(x, Tensor::zeros({2, 2, 3, 2})), "MultiHeadAttention: expected prev_values");
  a->elliptical = false;  // checked even when unused
  EXPECT_MG_ERROR(a->forward(x, Tensor::zeros({2, 2, 4, 2}, DType::Float64)),
                  "MultiHeadAttention: expected prev_values");
}

// Incremental decoding's errors, each leaving the cache as it was.
TEST(MultiHeadAttention, StepErrorsLeaveTheCache) {
  const char* op = "MultiHeadAttention::step";
  auto a = make_attention(4, 2, true, true, 1);
  KVCache cache;
  const Tensor x = Tensor::zeros({2, 1, 4}, DType::Float64), values = Tensor::zeros({2, 2, 1, 2}, DType::Float64);
  a->step(x, cache, values);
  ASSERT_EQ(cache.length(), 1);
  EXPECT_MG_ERROR(a->step(Tensor::zeros({2, 2, 4}, DType::Float64), cache, values),
                  std::string(op) + ": expected x [B, 1, 4], got [2, 2, 4]");
  EXPECT_MG_ERROR(a->step(Tensor(), cache, values), "got undefined");
  EXPECT_MG_ERROR(a->step(Tensor::zeros({3, 1, 4}, DType::Float64), cache, values), "the cache holds 2 samples, x 3");
  EXPECT_MG_ERROR(a->step(x, cache, Tensor::zeros({2, 2, 2, 2}, DType::Float64)),
                  "expected prev_values [2, 2, 1, 2] of dtype float64 on cpu, got [2, 2, 2, 2] float64 on cpu");
  EXPECT_MG_ERROR(a->step(x, cache, Tensor::zeros({2, 2, 1, 2})), "got [2, 2, 1, 2] float32 on cpu");
  EXPECT_EQ(cache.length(), 1);
  EXPECT_EQ(cache.prev_values.size(2), 1);
  a->step(x, cache, values);  // the cache still works
  EXPECT_EQ(cache.length(), 2);
  KVCache without;  // values at some steps but not others
  a->step(x, without, Tensor());
  EXPECT_MG_ERROR(a->step(x, without, values), "prev_values must come with every step or none; the cache holds 0");
  EXPECT_EQ(without.length(), 1);
  EXPECT_MG_ERROR(a->step(x, cache, Tensor()), "the cache holds 2 of them for 2 tokens, and this step has none");
  EXPECT_EQ(cache.length(), 2);
  auto bidirectional = make_attention(4, 2, false, false, 1);
  EXPECT_MG_ERROR(bidirectional->step(x, cache, Tensor()), std::string(op) + ": incremental decoding needs a causal layer");
}
