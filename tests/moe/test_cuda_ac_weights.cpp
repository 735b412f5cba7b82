// The AC feature weights on CUDA tensors against the CPU ops:
// ac_cluster_weights in every variant (MAD / variance, per-feature / global
// scaling, clip on / off, two eps, small clusters official / neutral) forward
// and backward, and ac_scale_gather
// with labels [n] or a mixed top-m index [n, m] (dx, dW, dmix), in float32 and
// float64, on shapes with empty clusters, one cluster, one token, more tokens
// than one sort chunk (256), more table columns than one block (1024),
// non-contiguous inputs and no tokens; the AC router's token scaling
// (detached and differentiable); float64 gradchecks of ac_cluster_weights on
// the device (those of ac_scale_gather: the op table, tests/ops/op_table.cpp);
// repeated runs give identical bits; and the errors (labels out of range with
// the CPU's message, devices and dtypes). Tolerances: test_cuda_helpers.h
// (float64 1e-12 relative, float32 1e-5).
#include "moe/ac_weights.h"
#include "moe/router.h"
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

std::vector<ACOptions> variants() {
  std::vector<ACOptions> out;
  for (ACStat st : {ACStat::MAD, ACStat::Variance})
    for (ACScaling sc : {ACScaling::PerFeature, ACScaling::Global})
      for (double clip : {10.0, 1.3, 0.0})
        for (ACSmallClusters small : {ACSmallClusters::Official, ACSmallClusters::Neutral}) {
          ACOptions o;
          o.stat = st, o.scaling = sc, o.clip = clip, o.eps = clip == 1.3 ? 0.35 : 1e-4, o.small_clusters = small;
          out.push_back(o);
        }
  return out;
}

std::string name(const ACOptions& o) {
  return std::string(o.stat == ACStat::MAD ? "MAD" : "variance") + "/" +
         (o.scaling == ACScaling::PerFeature ? "per-feature" : "global") + "/clip " + std::to_string(o.clip) +
         (o.small_clusters == ACSmallClusters::Neutral ? "/neutral" : "/official");
}

// Labels in [0, E) drawn from a counter-based stream; cluster 1 is left empty when E > 2.
Tensor cluster_labels(int64_t n, int64_t E, uint64_t seed) {
  std::vector<int64_t> c(n);
  for (int64_t i = 0; i < n; ++i) {
    c[i] = static_cast<int64_t>(random_bits(seed, i) % E);
    if (E > 2 && c[i] == 1) c[i] = 0;
  }
  return Tensor::from_indices(c, {n});
}

// A [n, d] input as a leaf that requires grad: `leaf` itself, or (strided) a
// transposed view of a [d, n] leaf, so the op sees a non-contiguous tensor.
struct Input {
  Tensor leaf, view;
};
Input make_input(const Tensor& x, bool strided, bool cuda) {
  Tensor base = strided ? contiguous(transpose(x, 0, 1)) : x;
  Tensor leaf = cuda ? on_cuda(base) : clone(base).detach();
  leaf.requires_grad_();
  return {leaf, strided ? transpose(leaf, 0, 1) : leaf};
}

struct ClusterCase {
  int64_t n, d, E;
  bool strided;
};

const std::vector<ClusterCase>& cluster_cases() {
  static const std::vector<ClusterCase> all = {
      {9, 3, 4, false},     // cluster 1 empty
      {1, 4, 3, false},     // one token
      {4, 3, 3, false},     // few tokens: clusters of one token or none
      {5, 2, 1, false},     // one cluster
      {12, 5, 6, true},     // non-contiguous x, several empty clusters
      {700, 6, 5, false},   // tokens over several sort chunks
      {40, 1100, 3, true},  // more columns than the table block's threads
  };
  return all;
}

// W and dx of sum(W ⊙ R) on one device.
std::pair<Tensor, Tensor> cluster_weights_and_grad(const Tensor& x, const Tensor& labels, const Tensor& R, int64_t E,
                                                   const ACOptions& o, bool strided, bool cuda) {
  Input in = make_input(x, strided, cuda);
  Tensor W = ac_cluster_weights(in.view, cuda ? on_cuda(labels) : labels, E, o);
  sum(mul(W, cuda ? on_cuda(R) : R)).backward();
  return {W, in.leaf.grad()};
}

}  // namespace

TEST(CudaACWeights, ClusterWeightsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const ClusterCase& cs : cluster_cases())
      for (const ACOptions& o : variants()) {
        const std::string what = std::string(dtype_name(dtype)) + " n=" + std::to_string(cs.n) + " d=" +
                                 std::to_string(cs.d) + " E=" + std::to_string(cs.E) + " " + name(o);
        Tensor x = uniform({cs.n, cs.d}, dtype, 21 + cs.n);
        Tensor labels = cluster_labels(cs.n, cs.E, 5 + cs.d);
        Tensor R = uniform({cs.E, cs.d}, dtype, 22);
        auto [W, dx] = cluster_weights_and_grad(x, labels, R, cs.E, o, cs.strided, false);
        auto [Wc, dxc] = cluster_weights_and_grad(x, labels, R, cs.E, o, cs.strided, true);
        EXPECT_TRUE(Wc.device().is_cuda()) << what;
        expect_close(Wc, W, what + " W");
        expect_close(dxc, dx, what + " dx");
      }
}

TEST(CudaACWeights, ClusterWeightsWithStridedLabels) {
  MG_SKIP_WITHOUT_CUDA();
  // labels as column 0 of a [n, 2] index, as the AC router takes them from the previous layer
  Tensor both = Tensor::from_indices({0, 2, 3, 0, 0, 1, 3, 3, 2, 0, 0, 1}, {6, 2});
  Tensor x = uniform({6, 3}, DType::Float64, 23);
  for (const ACOptions& o : variants()) {
    Tensor want = ac_cluster_weights(x, contiguous(squeeze(narrow(both, 1, 0, 1), 1)), 4, o);
    Tensor got = ac_cluster_weights(on_cuda(x), squeeze(narrow(on_cuda(both), 1, 0, 1), 1), 4, o);
    expect_close(got, want, name(o));
  }
}

// Every variant with an empty cluster: the op table (tests/ops/op_table.cpp).
TEST(CudaACWeights, ClusterWeightsGradcheckOnDevice) {
  MG_SKIP_WITHOUT_CUDA();
  // one token per cluster and most clusters empty, with the clip active
  ACOptions o;
  o.eps = 0.35, o.clip = 1.5;
  for (const std::vector<int64_t>& c : {std::vector<int64_t>{0, 1, 2, 3}, std::vector<int64_t>{4, 4, 4, 0, 0, 4}}) {
    const int64_t n = static_cast<int64_t>(c.size()), E = c.size() == 4 ? 4 : 5;
    Tensor lab = on_cuda(Tensor::from_indices(c, {n}));
    Tensor x = on_cuda(uniform({n, 3}, DType::Float64, 42, -1, 1)).requires_grad_();
    EXPECT_GRADCHECK([lab, E, o](const std::vector<Tensor>& in) { return ac_cluster_weights(in[0], lab, E, o); },
                     {x});
  }
}

namespace {

struct GatherCase {
  int64_t n, d, E, m;  // m = 0: labels [n] without mix weights
  bool strided;
};

const std::vector<GatherCase>& gather_cases() {
  static const std::vector<GatherCase> all = {
      {5, 3, 4, 0, false},    // labels
      {5, 3, 4, 0, true},     // labels, non-contiguous x
      {1, 2, 3, 0, false},    // one token
      {0, 3, 4, 0, false},    // no tokens
      {700, 9, 6, 0, false},  // over several sort chunks
      {5, 3, 4, 2, false},    // top-2 with mix weights
      {300, 4, 5, 3, true},   // top-3, n·m over several sort chunks, non-contiguous x
      {1, 5, 2, 1, false},    // top-1 with a mix weight
  };
  return all;
}

// Index [n] (m = 0) or [n, m]; position 1 of token 1 repeats position 0 when m > 1.
Tensor gather_index(const GatherCase& cs) {
  const int64_t cols = cs.m == 0 ? 1 : cs.m;
  std::vector<int64_t> idx(cs.n * cols);
  for (int64_t p = 0; p < cs.n * cols; ++p) idx[p] = static_cast<int64_t>(random_bits(31, p) % cs.E);
  if (cs.m > 1 && cs.n > 1) idx[cols + 1] = idx[cols];
  return cs.m == 0 ? Tensor::from_indices(idx, {cs.n}) : Tensor::from_indices(idx, {cs.n, cs.m});
}

struct GatherResult {
  Tensor out, dx, dW, dmix;
};

// out and the gradients of sum(out ⊙ R) on one device; W gets none unless need_w.
GatherResult gather_and_grads(const GatherCase& cs, DType dtype, bool need_w, bool cuda) {
  auto dev = [cuda](const Tensor& t) { return cuda ? on_cuda(t) : clone(t).detach(); };
  Input x = make_input(uniform({cs.n, cs.d}, dtype, 51), cs.strided, cuda);
  Tensor W = dev(uniform({cs.E, cs.d}, dtype, 52, 0.2, 2));
  if (need_w) W.requires_grad_();
  Tensor mix;
  if (cs.m > 0) mix = dev(uniform({cs.n, cs.m}, dtype, 53, 0, 1)).requires_grad_();
  Tensor out = ac_scale_gather(x.view, W, dev(gather_index(cs)), mix);
  sum(mul(out, dev(uniform({cs.n, cs.d}, dtype, 54)))).backward();
  return {out, x.leaf.grad(), need_w ? W.grad() : Tensor(), mix.defined() ? mix.grad() : Tensor()};
}

}  // namespace

TEST(CudaACWeights, ScaleGatherMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const GatherCase& cs : gather_cases())
      for (bool need_w : {true, false}) {
        const std::string what = std::string(dtype_name(dtype)) + " n=" + std::to_string(cs.n) + " m=" +
                                 std::to_string(cs.m) + (need_w ? " with dW" : " W detached");
        GatherResult want = gather_and_grads(cs, dtype, need_w, false);
        GatherResult got = gather_and_grads(cs, dtype, need_w, true);
        EXPECT_TRUE(got.out.device().is_cuda()) << what;
        expect_close(got.out, want.out, what + " out");
        if (cs.n > 0) expect_close(got.dx, want.dx, what + " dx");
        if (need_w) expect_close(got.dW, want.dW, what + " dW");
        if (cs.m > 0 && cs.n > 0) expect_close(got.dmix, want.dmix, what + " dmix");
      }
}

// The AC router's scaling of moe/router.h on the device, W detached (the
// paper) or differentiable, from labels alone or mixed over the top 2 (which
// takes the CUDA softmax).
TEST(CudaACWeights, TokenScaleMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  const int64_t n = 40, d = 6, E = 4;
  std::vector<int64_t> idx(n * 2);
  for (int64_t p = 0; p < n * 2; ++p) idx[p] = static_cast<int64_t>(random_bits(71, p) % E);
  const Tensor indices = Tensor::from_indices(idx, {n, 2});
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool differentiable : {false, true})
      for (int64_t mix_m : {1, 2}) {
        const std::string what = std::string(dtype_name(dtype)) + (differentiable ? " differentiable" : " detached") +
                                 " mix_m=" + std::to_string(mix_m);
        std::vector<Tensor> results[2];  // W, scaled, dx, dlogits on the CPU and on the device
        for (int cuda = 0; cuda < 2; ++cuda) {
          auto dev = [cuda](const Tensor& t) { return cuda ? on_cuda(t) : clone(t).detach(); };
          Tensor x = dev(uniform({n, d}, dtype, 72)), logits = dev(uniform({n, 2}, dtype, 73));
          x.requires_grad_(), logits.requires_grad_();
          ACScale s = ac_token_scale(x, {dev(indices), logits}, E, ACOptions(), mix_m, differentiable, "test");
          EXPECT_EQ(s.W.requires_grad(), differentiable) << what;
          sum(mul(s.scaled, dev(uniform({n, d}, dtype, 74)))).backward();
          results[cuda] = {s.W, s.scaled, x.grad(), logits.grad()};
        }
        expect_close(results[1][0], results[0][0], what + " W");
        expect_close(results[1][1], results[0][1], what + " scaled");
        expect_close(results[1][2], results[0][2], what + " dx");
        ASSERT_EQ(results[1][3].defined(), results[0][3].defined()) << what;
        if (results[0][3].defined()) expect_close(results[1][3], results[0][3], what + " dlogits");
      }
}

TEST(CudaACWeights, RepeatedRunsGiveIdenticalBits) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = on_cuda(uniform({3000, 7}, DType::Float32, 61));
  Tensor labels = on_cuda(cluster_labels(3000, 8, 62));
  ACOptions o;
  o.scaling = ACScaling::Global;
  std::vector<double> first_w, first_dx;
  for (int run = 0; run < 2; ++run) {
    Tensor xl = x.detach();
    xl.requires_grad_();
    Tensor W = ac_cluster_weights(xl, labels, 8, o);
    sum(ac_scale_gather(xl, W, labels)).backward();
    if (run == 0) {
      first_w = W.to_vector(), first_dx = xl.grad().to_vector();
    } else {
      EXPECT_EQ(W.to_vector(), first_w);
      EXPECT_EQ(xl.grad().to_vector(), first_dx);
    }
  }
}

TEST(CudaACWeights, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = on_cuda(Tensor::zeros({3, 2}));
  EXPECT_MG_ERROR(ac_cluster_weights(x, on_cuda(Tensor::from_indices({0, 1, 2}, {3})), 2, ACOptions()),
                  "ac_cluster_weights: label 2 of token 2 outside [0, 2)");
  EXPECT_MG_ERROR(ac_cluster_weights(x, on_cuda(Tensor::from_indices({0, -1, 1}, {3})), 2, ACOptions()),
                  "ac_cluster_weights: label -1 of token 1 outside [0, 2)");
  EXPECT_MG_ERROR(ac_cluster_weights(x, Tensor::from_indices({0, 1, 1}, {3}), 2, ACOptions()),
                  "ac_cluster_weights: labels is on cpu, expected cuda:0");
  EXPECT_MG_ERROR(ac_cluster_weights(x, on_cuda(Tensor::zeros({3})), 2, ACOptions()),
                  "ac_cluster_weights: labels must be int64, got float32");
  EXPECT_MG_ERROR(ac_cluster_weights(x, on_cuda(Tensor::from_indices({0}, {1})), 2, ACOptions()),
                  "labels must be [3], got [1]");
  EXPECT_MG_ERROR(ac_cluster_weights(on_cuda(Tensor::zeros({3}, DType::Int64)), on_cuda(Tensor::zeros({3}, DType::Int64)), 2,
                                     ACOptions()),
                  "ac_cluster_weights: input must be float32 or float64");

  Tensor W = on_cuda(Tensor::zeros({3, 2})), x2 = on_cuda(Tensor::zeros({2, 2}));
  EXPECT_MG_ERROR(ac_scale_gather(x2, W, on_cuda(Tensor::from_indices({0, 5}, {2}))),
                  "ac_scale_gather: index 5 at position 1 outside [0, 3)");
  EXPECT_MG_ERROR(ac_scale_gather(x2, W, on_cuda(Tensor::from_indices({0, 1, 2, -3}, {2, 2})), on_cuda(Tensor::ones({2, 2}))),
                  "ac_scale_gather: index -3 at position 3 outside [0, 3)");
  EXPECT_MG_ERROR(ac_scale_gather(x2, W, Tensor::from_indices({0, 1}, {2})),
                  "ac_scale_gather: index is on cpu, expected cuda:0");
  EXPECT_MG_ERROR(ac_scale_gather(x2, Tensor::zeros({3, 2}), on_cuda(Tensor::from_indices({0, 1}, {2}))),
                  "ac_scale_gather: devices differ: cuda:0 vs cpu");
  EXPECT_MG_ERROR(ac_scale_gather(x2, W, on_cuda(Tensor::from_indices({0, 1, 1, 0}, {2, 2})), Tensor::ones({2, 2})),
                  "ac_scale_gather: devices differ");
  EXPECT_MG_ERROR(ac_scale_gather(x2, on_cuda(Tensor::zeros({3, 2}, DType::Float64)),
                                  on_cuda(Tensor::from_indices({0, 1}, {2}))),
                  "ac_scale_gather: dtypes differ");
  EXPECT_MG_ERROR(ac_scale_gather(x2, W, on_cuda(Tensor::from_indices({0, 1, 1, 0}, {2, 2}))), "needs mix weights");
  EXPECT_MG_ERROR(ac_scale_gather(x2, W, on_cuda(Tensor::empty({2, 0}, DType::Int64)), on_cuda(Tensor::ones({2, 0}))),
                  "index must name at least one cluster per token");
}
