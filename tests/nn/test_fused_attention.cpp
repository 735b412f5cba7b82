// fused_attention: against the composition it replaces (masked_softmax of the
// scaled scores times v) causal and not, T < S, several query blocks, strided
// inputs; float32 against float64; independent of the thread count;
// errors; with dropout, against dropout() on the composition's probabilities
// (same mask, same generator advance), forward and gradients.
// fused_self_attention (packed qkv): against fused_attention on the split
// heads, with dropout too; errors. Gradient checks across block boundaries: the op table,
// tests/ops/op_table.cpp.
#include <omp.h>

#include <cmath>

#include "nn/attention.h"
#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;
using moegrad::testing::leaf;

namespace {

Tensor composed(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                Generator* drop_gen = nullptr, double p = 0) {
  Tensor probs = masked_softmax(mul(matmul(q, transpose(k, 2, 3)), scale), causal);
  return matmul(drop_gen ? dropout(probs, p, true, drop_gen) : probs, v);
}

// y and the gradients of sum(y ⊙ w) with respect to each input, side by side.
std::vector<double> value_and_grads(const Tensor& y, const Tensor& w, std::vector<Tensor> inputs) {
  for (Tensor& t : inputs) t.zero_grad();
  sum(mul(y, w)).backward();
  std::vector<double> all = y.to_vector();
  for (const Tensor& t : inputs) {
    const std::vector<double> g = t.grad().to_vector();
    all.insert(all.end(), g.begin(), g.end());
  }
  return all;
}

}  // namespace

TEST(FusedAttention, MatchesComposition) {
  for (bool causal : {false, true})
    for (auto [nt, ns] : {std::pair<int64_t, int64_t>{70, 70}, {37, 75}, {1, 1}, {5, 3}}) {
      if (causal && ns < nt) continue;
      Tensor q = leaf({2, 3, nt, 5}, 1), k = leaf({2, 3, ns, 5}, 2), v = leaf({2, 3, ns, 5}, 3);
      expect_near(fused_attention(q, k, v, 0.7, causal).to_vector(), composed(q, k, v, 0.7, causal).to_vector(),
                  1e-12);
    }
}

TEST(FusedAttention, DropoutMatchesDropoutOnTheProbabilities) {
  for (double p : {0.3, 0.7})
    for (bool causal : {false, true})
      for (auto [nt, ns] : {std::pair<int64_t, int64_t>{70, 70}, {37, 75}, {5, 3}}) {
        if (causal && ns < nt) continue;
        Tensor q = leaf({2, 3, nt, 5}, 1).requires_grad_(), k = leaf({2, 3, ns, 5}, 2).requires_grad_();
        Tensor v = leaf({2, 3, ns, 5}, 3).requires_grad_(), w = leaf({2, 3, nt, 5}, 4);
        Generator fused_gen(11), composed_gen(11);
        fused_gen.take(5), composed_gen.take(5);
        const std::vector<double> fused =
            value_and_grads(fused_attention(q, k, v, 0.7, causal, {p, &fused_gen}), w, {q, k, v});
        const std::vector<double> want =
            value_and_grads(composed(q, k, v, 0.7, causal, &composed_gen, p), w, {q, k, v});
        expect_near(fused, want, 1e-12);
        EXPECT_EQ(fused_gen.offset(), composed_gen.offset());
      }
}

TEST(FusedAttention, DropoutOfOneDropsEverything) {
  Tensor q = leaf({1, 2, 9, 4}, 5).requires_grad_(), k = leaf({1, 2, 9, 4}, 6).requires_grad_();
  Tensor v = leaf({1, 2, 9, 4}, 7).requires_grad_();
  Generator gen(3);
  const std::vector<double> all =
      value_and_grads(fused_attention(q, k, v, 0.5, true, {1.0, &gen}), leaf({1, 2, 9, 4}, 8), {q, k, v});
  for (double x : all) ASSERT_EQ(x, 0.0);
}

TEST(FusedAttention, StridedInputs) {
  // q, k, v as the attention module makes them: views of a [B, T, 3, H, Dh] tensor
  Tensor parts = permute(leaf({2, 40, 3, 2, 4}, 4), {2, 0, 3, 1, 4});
  auto part = [&](int64_t i) { return squeeze(narrow(parts, 0, i, 1), 0); };
  Tensor q = part(0), k = part(1), v = part(2);
  ASSERT_FALSE(q.is_contiguous());
  expect_near(fused_attention(q, k, v, 0.5, true).to_vector(), composed(q, k, v, 0.5, true).to_vector(), 1e-12);
}

TEST(FusedAttention, Float32AgreesWithFloat64) {
  Tensor q = leaf({1, 2, 50, 8}, 5, -2, 2), k = leaf({1, 2, 50, 8}, 6, -2, 2), v = leaf({1, 2, 50, 8}, 7);
  const std::vector<double> want = fused_attention(q, k, v, 0.35, true).to_vector();
  const std::vector<double> got =
      fused_attention(q.to(DType::Float32), k.to(DType::Float32), v.to(DType::Float32), 0.35, true).to_vector();
  expect_near(got, want, 1e-5);
}

TEST(FusedAttention, SameResultForAnyThreadCount) {
  Tensor q = leaf({2, 4, 45, 6}, 8).requires_grad_(), k = leaf({2, 4, 45, 6}, 9).requires_grad_();
  Tensor v = leaf({2, 4, 45, 6}, 10).requires_grad_();
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    q.zero_grad(), k.zero_grad(), v.zero_grad();
    Tensor y = fused_attention(q, k, v, 0.4, true);
    sum(mul(y, y)).backward();
    std::vector<double> all = y.to_vector();
    for (const Tensor& t : {q.grad(), k.grad(), v.grad()}) {
      std::vector<double> g = t.to_vector();
      all.insert(all.end(), g.begin(), g.end());
    }
    return all;
  };
  const int before = omp_get_max_threads();
  const std::vector<double> one = run(1), two = run(2);
  omp_set_num_threads(before);
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) ASSERT_EQ(one[i], two[i]) << "element " << i << " of " << one.size();
}

// q, k, v of a packed [B, T, 3·dim] projection, as MultiHeadAttention splits it.
std::vector<Tensor> split_heads(const Tensor& qkv, int64_t heads) {
  const int64_t nb = qkv.size(0), nt = qkv.size(1), dh = qkv.size(2) / 3 / heads;
  Tensor parts = permute(reshape(qkv, {nb, nt, 3, heads, dh}), {2, 0, 3, 1, 4});
  std::vector<Tensor> out;
  for (int64_t i = 0; i < 3; ++i) out.push_back(squeeze(narrow(parts, 0, i, 1), 0));
  return out;
}

Tensor merged_heads(const Tensor& y) {  // [B, H, T, Dh] -> [B, T, H·Dh]
  return reshape(permute(y, {0, 2, 1, 3}), {y.size(0), y.size(2), y.size(1) * y.size(3)});
}

TEST(FusedSelfAttention, MatchesSplitHeads) {
  for (bool causal : {true, false}) {
    Tensor qkv = leaf({2, 70, 3 * 12}, 30);
    std::vector<Tensor> h = split_heads(qkv, 3);
    expect_near(fused_self_attention(qkv, 3, 0.6, causal).to_vector(),
                merged_heads(composed(h[0], h[1], h[2], 0.6, causal)).to_vector(), 1e-12);
  }
}

TEST(FusedSelfAttention, GradientMatchesSplitHeads) {
  Tensor qkv = leaf({2, 40, 3 * 8}, 32).requires_grad_();
  Tensor w = leaf({2, 40, 8}, 33);
  sum(mul(fused_self_attention(qkv, 2, 0.5, true), w)).backward();
  const std::vector<double> fused = qkv.grad().to_vector();
  qkv.zero_grad();
  std::vector<Tensor> h = split_heads(qkv, 2);
  sum(mul(merged_heads(composed(h[0], h[1], h[2], 0.5, true)), w)).backward();
  expect_near(fused, qkv.grad().to_vector(), 1e-12);
}

TEST(FusedSelfAttention, DropoutMatchesSplitHeads) {
  Tensor qkv = leaf({2, 40, 3 * 8}, 32).requires_grad_();
  Tensor w = leaf({2, 40, 8}, 33);
  Generator fused_gen(5), composed_gen(5);
  const std::vector<double> fused =
      value_and_grads(fused_self_attention(qkv, 2, 0.5, true, {0.4, &fused_gen}), w, {qkv});
  std::vector<Tensor> h = split_heads(qkv, 2);
  const std::vector<double> want =
      value_and_grads(merged_heads(composed(h[0], h[1], h[2], 0.5, true, &composed_gen, 0.4)), w, {qkv});
  expect_near(fused, want, 1e-12);
  EXPECT_EQ(fused_gen.offset(), composed_gen.offset());
}

TEST(FusedSelfAttention, Errors) {
  EXPECT_MG_ERROR(fused_self_attention(leaf({2, 4, 10}, 34), 2, 1.0, true), "multiple of heads=2");
  EXPECT_MG_ERROR(fused_self_attention(leaf({4, 12}, 35), 2, 1.0, true), "expected qkv [B, T, 3 * dim]");
  EXPECT_MG_ERROR(fused_self_attention(leaf({2, 4, 12}, 36), 0, 1.0, true), "heads must be positive");
  EXPECT_MG_ERROR(fused_self_attention(leaf({2, 4, 12}, 37), 2, INFINITY, true), "scale must be finite");
  EXPECT_MG_ERROR(fused_self_attention(leaf({2, 4, 12}, 38).to(DType::Int64), 2, 1.0, true), "float32 or float64");
}

TEST(FusedAttention, Errors) {
  Tensor q = leaf({1, 2, 4, 3}, 17), k = leaf({1, 2, 4, 3}, 18);
  EXPECT_MG_ERROR(fused_attention(q, k, leaf({1, 2, 5, 3}, 19), 1.0, false), "to match q");
  EXPECT_MG_ERROR(fused_attention(q, leaf({1, 2, 4, 2}, 20), leaf({1, 2, 4, 2}, 21), 1.0, false), "to match q");
  EXPECT_MG_ERROR(fused_attention(leaf({2, 4, 3}, 22), k, k, 1.0, false), "expected q [B, H, T, Dh]");
  EXPECT_MG_ERROR(fused_attention(q, leaf({1, 2, 3, 3}, 23), leaf({1, 2, 3, 3}, 24), 1.0, true), "S >= T");
  EXPECT_MG_ERROR(fused_attention(q, k, k.to(DType::Float32), 1.0, false), "dtypes differ");
  EXPECT_MG_ERROR(fused_attention(q, k, k, NAN, false), "scale must be finite");
  EXPECT_MG_ERROR(fused_attention(q.to(DType::Int64), k, k, 1.0, false), "float32 or float64");
  EXPECT_MG_ERROR(fused_attention(leaf({1, 2, 4, 0}, 25), leaf({1, 2, 4, 0}, 26), leaf({1, 2, 4, 0}, 27), 1.0, false),
                  "Dh >= 1");
  Generator gen(1);
  for (double p : {-0.1, 1.5, double(NAN)}) {
    EXPECT_MG_ERROR(fused_attention(q, k, k, 1.0, false, {p, &gen}), "dropout probability p must be in [0, 1]");
    EXPECT_MG_ERROR(fused_self_attention(leaf({2, 4, 12}, 39), 2, 1.0, true, {p, &gen}),
                    "dropout probability p must be in [0, 1]");
  }
  EXPECT_EQ(gen.offset(), 0u);
}
