// The AC feature weights: values against a direct transcription of the
// equations (with and without an empty cluster, the clip binding or not),
// gradchecks of the differentiable op on the edge cases (empty clusters, one
// cluster, n = 1) and with the official clip binding, the
// neutral treatment of small clusters (the shrinkage an empty cluster causes
// under the official form, and its absence under the neutral one), the
// scale-gather with mixing, and errors. The gradient checks of every variant
// and of the scale-gather: the op table, tests/ops/op_table.cpp.
#include <cmath>

#include "moe/ac_variants.h"
#include "moe/ac_weights.h"
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::ac_variants;
using moegrad::testing::leaf;

// The equations of moe/ac_weights.h, written out with plain loops.
static std::vector<double> reference(const Tensor& x, const std::vector<int64_t>& c, int64_t E,
                                     const ACOptions& o) {
  const int64_t n = x.size(0), d = x.size(1);
  std::vector<double> mu(E * d, 0), s(E * d, 0), cnt(E, 0);
  for (int64_t i = 0; i < n; ++i) cnt[c[i]]++;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t f = 0; f < d; ++f) mu[c[i] * d + f] += x.at({i, f}) / cnt[c[i]];
  for (int64_t i = 0; i < n; ++i)
    for (int64_t f = 0; f < d; ++f) {
      double r = x.at({i, f}) - mu[c[i] * d + f];
      s[c[i] * d + f] += (o.stat == ACStat::MAD ? std::fabs(r) : r * r) / cnt[c[i]];
    }
  std::vector<double> W(E * d);
  double m = 0;
  for (int64_t j = 0; j < E * d; ++j) m += (W[j] = 1 / (s[j] + o.eps)) / (E * d);
  if (o.clip > 0)
    for (double& v : W) v = std::min(v, o.clip * m);
  if (o.scaling == ACScaling::PerFeature) {
    for (int64_t f = 0; f < d; ++f) {
      double q = 0;
      for (int64_t e = 0; e < E; ++e) q += W[e * d + f] / E;
      for (int64_t e = 0; e < E; ++e) W[e * d + f] /= q;
    }
  } else {
    double q = 0;
    for (double v : W) q += v / (E * d);
    for (double& v : W) v /= q;
  }
  return W;
}

// 20 tokens in clusters 0, 1, 3 (2 empty), or in all four with cluster 2's
// tokens 2 and 6 within 1e-4 of each other along feature 0 (and 1.5 apart
// along the others: two random tokens may be close by chance): an entry 1/eps
// that the official clip (10 · the mean entry) cuts, which it cannot do
// beside an empty cluster (whose d entries 1/eps lift the mean).
namespace {

struct ClusteredTokens {
  Tensor x;
  std::vector<int64_t> labels;
};

ClusteredTokens tokens_with_an_empty_cluster() {
  ClusteredTokens t{Tensor::randn({20, 5}, 0, 1, DType::Float64), {}};
  for (int i = 0; i < 20; ++i) t.labels.push_back(i % 3 == 0 ? 0 : (i % 3 == 1 ? 1 : 3));
  return t;
}

ClusteredTokens tokens_with_a_tight_cluster() {
  Generator gen(7);
  ClusteredTokens t{Tensor::randn({20, 5}, 0, 1, DType::Float64, &gen), {}};
  for (int i = 0; i < 20; ++i) t.labels.push_back(i == 2 || i == 6 ? 2 : i % 3 == 0 ? 0 : (i % 3 == 1 ? 1 : 3));
  std::vector<double> v = t.x.to_vector();
  for (int f = 0; f < 5; ++f) v[6 * 5 + f] = v[2 * 5 + f] + (f == 0 ? 1e-4 : 1.5);  // tight along feature 0 only
  t.x = Tensor::from_vector(v, {20, 5}, DType::Float64);
  return t;
}

}  // namespace

TEST(ACWeights, ValuesMatchTheEquations) {
  for (const ClusteredTokens& t : {tokens_with_an_empty_cluster(), tokens_with_a_tight_cluster()}) {
    const Tensor labels = Tensor::from_indices(t.labels, {20});
    for (const ACOptions& o : ac_variants()) {
      std::vector<double> ref = reference(t.x, t.labels, 4, o);
      std::vector<double> got = ac_cluster_weights(t.x, labels, 4, o).to_vector();
      for (size_t j = 0; j < ref.size(); ++j) EXPECT_NEAR(got[j], ref[j], 1e-9 * std::max(1.0, std::fabs(ref[j])));
      // float32 agrees
      std::vector<double> f32 = ac_cluster_weights(t.x.to(DType::Float32), labels, 4, o).to_vector();
      for (size_t j = 0; j < ref.size(); ++j) EXPECT_NEAR(f32[j], ref[j], 1e-4 * std::max(1.0, std::fabs(ref[j])));
    }
  }
}

// The official clip binds on the tight cluster (its weights differ from the
// unclipped ones), and the backward through the cut entry is right.
TEST(ACWeights, TheOfficialClipBindsOnATightCluster) {
  const ClusteredTokens t = tokens_with_a_tight_cluster();
  const Tensor labels = Tensor::from_indices(t.labels, {20});
  for (ACStat st : {ACStat::MAD, ACStat::Variance})
    for (ACScaling sc : {ACScaling::PerFeature, ACScaling::Global}) {
      ACOptions clipped, unclipped;
      clipped.stat = unclipped.stat = st, clipped.scaling = unclipped.scaling = sc;
      unclipped.clip = 0;
      ASSERT_EQ(clipped.clip, 10.0);
      const std::vector<double> a = ac_cluster_weights(t.x, labels, 4, clipped).to_vector();
      const std::vector<double> b = ac_cluster_weights(t.x, labels, 4, unclipped).to_vector();
      // the cut entry (cluster 2, feature 0) stays the largest; what it no longer
      // outweighs changes: feature 0's other clusters about double
      double change = 0;
      for (size_t j = 0; j < a.size(); ++j) change = std::max(change, std::fabs(a[j] - b[j]) / std::fabs(b[j]));
      EXPECT_GT(change, 0.5) << "the clip did not cut cluster 2";
      Tensor x = t.x.detach();
      x.requires_grad_();
      EXPECT_GRADCHECK([labels, clipped](const std::vector<Tensor>& in) {
        return ac_cluster_weights(in[0], labels, 4, clipped);
      }, {x});
    }
}

TEST(ACWeights, PerFeatureWeightsAverageToOne) {
  Tensor x = Tensor::randn({30, 4}, 0, 1, DType::Float64);
  std::vector<int64_t> c(30);
  for (int i = 0; i < 30; ++i) c[i] = i % 5;
  Tensor W = ac_cluster_weights(x, Tensor::from_indices(c, {30}), 5, ACOptions());
  for (double v : mean(W, {0}).to_vector()) EXPECT_NEAR(v, 1.0, 1e-12);
}

TEST(ACWeights, GradcheckEdgeCases) {
  ACOptions o;
  o.eps = 0.35, o.clip = 1.5;
  struct Case { int64_t n, E; std::vector<int64_t> c; };
  const std::vector<Case> cases = {
      {1, 3, {2}},                   // n = 1
      {5, 1, {0, 0, 0, 0, 0}},       // a single cluster
      {4, 4, {0, 1, 2, 3}},          // one token per cluster (k = E style)
      {6, 5, {4, 4, 4, 0, 0, 4}},    // most clusters empty
  };
  for (const Case& cs : cases) {
    for (ACScaling sc : {ACScaling::PerFeature, ACScaling::Global}) {
      o.scaling = sc;
      Tensor labels = Tensor::from_indices(cs.c, {cs.n});
      Tensor x = leaf({cs.n, 3}, 42);
      int64_t E = cs.E;
      Tensor W = ac_cluster_weights(x, labels, E, o);
      for (double v : W.to_vector()) EXPECT_TRUE(std::isfinite(v));
      EXPECT_GRADCHECK([labels, E, o](const std::vector<Tensor>& in) {
        return ac_cluster_weights(in[0], labels, E, o);
      }, {x});
    }
  }
}

// One empty cluster among E, without clip: the official form divides each
// feature by the mean over E + 1 rows, one of them 1/eps, so every real
// cluster's weight falls by q_f / q'_f = (Σ_e A_ef / E) / ((Σ_e A_ef + 1/eps) / (E + 1)).
TEST(ACWeights, AnEmptyClusterShrinksTheOfficialWeights) {
  Tensor x = Tensor::randn({24, 4}, 0, 1, DType::Float64, nullptr);
  std::vector<int64_t> c(24);
  for (int i = 0; i < 24; ++i) c[i] = i % 3;
  Tensor labels = Tensor::from_indices(c, {24});
  ACOptions o;
  o.clip = 0;
  const std::vector<double> base = ac_cluster_weights(x, labels, 3, o).to_vector();
  const std::vector<double> with_empty = ac_cluster_weights(x, labels, 4, o).to_vector();
  double mean_w = 0, mean_base = 0;
  for (int64_t f = 0; f < 4; ++f) {
    double sum_a = 0;  // Σ_e A_ef with A = 1 / (s + eps) over the 8 tokens of each cluster
    for (int64_t e = 0; e < 3; ++e) {
      double s = 0, mu = 0;
      for (int i = e; i < 24; i += 3) mu += x.at({i, f}) / 8;
      for (int i = e; i < 24; i += 3) s += std::fabs(x.at({i, f}) - mu) / 8;
      sum_a += 1 / (s + o.eps);
    }
    const double factor = (sum_a / 3) / ((sum_a + 1 / o.eps) / 4);
    for (int64_t e = 0; e < 3; ++e) {
      EXPECT_NEAR(with_empty[e * 4 + f], base[e * 4 + f] * factor, 1e-12 * base[e * 4 + f]);
      mean_w += with_empty[e * 4 + f] / 12, mean_base += base[e * 4 + f] / 12;
    }
    EXPECT_NEAR(with_empty[3 * 4 + f], (1 / o.eps) / ((sum_a + 1 / o.eps) / 4), 1e-9);
  }
  EXPECT_NEAR(mean_base, 1.0, 1e-12);
  EXPECT_LT(mean_w, 0.01);  // the real clusters' weights shrink by orders of magnitude
}

// Neutral: a cluster of fewer than two tokens gets W = 1 and leaves the other
// rows exactly as they are without it, in every variant (clip included).
TEST(ACWeights, NeutralSmallClustersLeaveTheOthersUnchanged) {
  Tensor x = Tensor::randn({25, 4}, 0, 1, DType::Float64, nullptr);
  std::vector<int64_t> c(24);
  for (int i = 0; i < 24; ++i) c[i] = i % 3;  // clusters 0, 1, 2 of 8 tokens
  std::vector<int64_t> c_small = c;
  c_small.push_back(4);  // token 24 alone in cluster 4; cluster 3 empty
  for (ACOptions o : ac_variants()) {
    o.small_clusters = ACSmallClusters::Neutral;
    const Tensor x24 = narrow(x, 0, 0, 24), labels = Tensor::from_indices(c, {24});
    const std::vector<double> base = ac_cluster_weights(x24, labels, 3, o).to_vector();
    ACOptions official = o;  // without small clusters the two forms agree
    official.small_clusters = ACSmallClusters::Official;
    EXPECT_EQ(base, ac_cluster_weights(x24, labels, 3, official).to_vector());
    const std::vector<double> got = ac_cluster_weights(x, Tensor::from_indices(c_small, {25}), 6, o).to_vector();
    for (int64_t j = 0; j < 12; ++j) EXPECT_NEAR(got[j], base[j], 1e-13 * std::fabs(base[j]));
    for (int64_t j = 12; j < 24; ++j) EXPECT_EQ(got[j], 1.0);  // clusters 3 (empty), 4 (one token), 5 (empty)
  }
  // no cluster of two tokens: all of W is 1
  ACOptions o;
  o.small_clusters = ACSmallClusters::Neutral;
  for (double v : ac_cluster_weights(narrow(x, 0, 0, 3), Tensor::from_indices({0, 1, 2}, {3}), 4, o).to_vector())
    EXPECT_EQ(v, 1.0);
}

TEST(ACWeights, GradcheckNeutralSmallClusters) {
  std::vector<int64_t> c = {0, 1, 0, 1, 1, 3, 0, 5, 3};  // cluster 2 and 4 empty, cluster 5 one token
  Tensor labels = Tensor::from_indices(c, {9});
  for (ACOptions o : ac_variants()) {
    o.small_clusters = ACSmallClusters::Neutral;
    SCOPED_TRACE(std::to_string(static_cast<int>(o.stat)) + "/" + std::to_string(static_cast<int>(o.scaling)) +
                 "/clip " + std::to_string(o.clip));
    EXPECT_GRADCHECK([labels, o](const std::vector<Tensor>& in) { return ac_cluster_weights(in[0], labels, 6, o); },
                     {leaf({9, 3}, 48)});
    // through the scaling of the tokens, mixing over two previous choices
    Tensor idx = Tensor::from_indices({0, 1, 1, 3, 0, 1, 1, 0, 1, 5, 3, 0, 0, 1, 5, 3, 3, 0}, {9, 2});
    EXPECT_GRADCHECK([idx, o](const std::vector<Tensor>& in) {
      return ac_token_scale(in[0], {idx, in[1]}, 6, o, 2, true, "test").scaled;
    }, {leaf({9, 3}, 49), leaf({9, 2}, 50)});
  }
}

TEST(ACWeights, ScaleGatherValues) {
  Tensor W = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {3, 2}, DType::Float64);
  Tensor x = Tensor::from_vector({1, 10, 2, 20}, {2, 2}, DType::Float64);
  EXPECT_EQ(ac_scale_gather(x, W, Tensor::from_indices({2, 0}, {2})).to_vector(), (std::vector<double>{5, 60, 2, 40}));
  Tensor mix = Tensor::from_vector({0.25, 0.75}, {1, 2}, DType::Float64);
  EXPECT_EQ(ac_scale_gather(narrow(x, 0, 0, 1), W, Tensor::from_indices({0, 1}, {1, 2}), mix).to_vector(),
            (std::vector<double>{2.5, 35}));
}

TEST(ACWeights, Errors) {
  Tensor x = Tensor::zeros({3, 2});
  Tensor labels = Tensor::from_indices({0, 1, 2}, {3});
  EXPECT_MG_ERROR(ac_cluster_weights(x, labels, 2, ACOptions()), "ac_cluster_weights: label 2 of token 2 outside [0, 2)");
  EXPECT_MG_ERROR(ac_cluster_weights(x, Tensor::from_indices({0}, {1}), 2, ACOptions()), "labels must be [3], got [1]");
  EXPECT_MG_ERROR(ac_cluster_weights(Tensor::zeros({3}), labels, 3, ACOptions()), "x must be [tokens, features]");
  ACOptions bad;
  bad.eps = 0;
  EXPECT_MG_ERROR(ac_cluster_weights(x, labels, 3, bad), "eps must be positive");
  bad.eps = INFINITY;  // would make every A zero and W 0/0
  EXPECT_MG_ERROR(ac_cluster_weights(x, labels, 3, bad), "ac_cluster_weights: eps must be positive and finite, got inf");
  EXPECT_MG_ERROR(ac_cluster_weights(x, labels, 0, ACOptions()), "number of clusters must be positive");
  Tensor W = Tensor::zeros({3, 2}), x2 = Tensor::zeros({2, 2});
  EXPECT_MG_ERROR(ac_scale_gather(x2, W, Tensor::from_indices({0, 5}, {2})), "ac_scale_gather: index 5 at position 1");
  EXPECT_MG_ERROR(ac_scale_gather(narrow(x2, 0, 0, 1), W, Tensor::from_indices({0, 1}, {1, 2})), "needs mix weights");
  EXPECT_MG_ERROR(ac_scale_gather(narrow(x2, 0, 0, 1), W, Tensor::from_indices({0, 1}, {1, 2}), Tensor::zeros({2, 1})),
                  "mix must have the index's shape [1, 2]");
  EXPECT_MG_ERROR(ac_scale_gather(Tensor::zeros({2, 3}), W, Tensor::from_indices({0, 1}, {2})), "x must be [n, 2]");
  EXPECT_MG_ERROR(ac_scale_gather(x2, W, Tensor::from_indices({0, 1, 2}, {3})), "index must be [2] or [2, m]");
}

// A graph whose backward never runs frees W and what its node saved (the node
// must not hold its own output).
TEST(ACWeights, AnUnusedGraphIsFreed) {
  std::weak_ptr<TensorImpl> W_impl, x_impl;
  {
    Tensor x = leaf({9, 3}, 51);
    Tensor W = ac_cluster_weights(x, Tensor::from_indices({0, 1, 0, 1, 1, 2, 0, 2, 2}, {9}), 3, ACOptions());
    ASSERT_TRUE(W.grad_fn());
    W_impl = W.impl_ptr(), x_impl = x.impl_ptr();
  }
  EXPECT_TRUE(W_impl.expired());
  EXPECT_TRUE(x_impl.expired());
}
