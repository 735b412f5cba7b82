// Multi-head self-attention, plain or elliptical, and the two kernels it
// needs: a fused row-wise masked softmax (causal masking without building a
// mask tensor) and the detached elliptical metric of docs/design.md ("Elliptical
// attention"): scores = (q ⊙ m) kᵀ / √Dh with m from this layer's values and
// the previous attention layer's values. Everything here takes CPU or CUDA
// tensors (cuda/attention.h, cuda/flash_attention.h; the CUDA fused kernels,
// dropout included, take head dims up to 128). The module always takes the
// fused kernels: no [T, S] probabilities are stored, with dropout or without.
#pragma once
#include "nn/layers.h"

namespace moegrad {

// Softmax over the last dim of scores [..., T, S]. With causal, entry (t, s)
// with s > t + (S - T) is masked: it is never exponentiated and its
// probability is exactly 0 (causal needs S >= T, so no row is fully masked).
// One fused row-wise kernel (parallel over rows), hand-written backward
// (dx = y * (dy - Σ dy*y) over the row, 0 at masked entries).
Tensor masked_softmax(const Tensor& scores, bool causal);

// m [B, H, 1, Dh] = mean over tokens of |v - v_prev| per sample, head and
// feature, divided by its max over Dh (a max of 0 gives m = 1); detached (no
// gradient). v, v_prev: [B, H, T, Dh] of one float dtype, T >= 1.
// With causal, m [B, H, T, Dh] holds at row t the same statistic over tokens
// 0..t only, so a causal model's token t never sees later tokens through m
// (docs/design.md's mean over all tokens would leak them into a language model).
Tensor elliptical_metric(const Tensor& v, const Tensor& v_prev, bool causal = false);

// Dropout on the attention probabilities: probability p (0: none) with the
// counters of gen (the default generator when null).
struct AttentionDropout {
  double p = 0.0;
  Generator* gen = nullptr;
};

// softmax(scale · q kᵀ) v, causal or not, without building the [T, S]
// scores of the whole sequence (nn/fused_attention.cpp): q [B, H, T, Dh],
// k and v [B, H, S, Dh] -> [B, H, T, Dh]; causal needs S >= T and masks key
// s > t + (S - T) as masked_softmax does. Hand-written backward that
// recomputes the probabilities from the saved log-sum-exp of each row.
// q, k, v may be strided views: rows whose Dh elements are adjacent are read
// in place.
// With `drop`, dropout on the probabilities without storing them: the mask
// dropout(probabilities [B, H, T, S], drop.p, true, drop.gen) would draw, and
// the generator advances as it would.
Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                       const AttentionDropout& drop = {});
// The same from a packed projection qkv [B, T, 3·dim] (q, k, v side by side,
// each [B, T, heads, Dh] as MultiHeadAttention splits them) to [B, T, dim]
// with the heads side by side: no copies of q, k, v and one packed gradient.
Tensor fused_self_attention(const Tensor& qkv, int64_t heads, double scale, bool causal,
                             const AttentionDropout& drop = {});

struct AttentionOutput {
  Tensor y;       // [B, T, dim]
  Tensor values;  // v [B, H, T, Dh], to hand on to the next (elliptical) attention layer
};

// What incremental decoding keeps per attention layer: the keys and values of
// the tokens so far, and for the elliptical metric the previous layer's
// values of those tokens, all [B, H, t, Dh].
struct KVCache {
  Tensor k, v, prev_values;
  int64_t length() const { return k.defined() ? k.size(2) : 0; }
};

class MultiHeadAttention : public Module {
 public:
  // bias: whether the qkv and output projections have biases.
  MultiHeadAttention(int64_t dim, int64_t heads, bool causal, double dropout = 0.0, const InitOptions& opt = {},
                     bool bias = true);
  // x [B, T, dim]. If `elliptical` is set and prev_values is defined, scores
  // = (q ⊙ m) kᵀ / √Dh with m = elliptical_metric(v, prev_values, causal); otherwise
  // plain scaled dot-product attention. A defined prev_values must be
  // [B, H, T, Dh] with x's dtype (checked even when it goes unused).
  AttentionOutput forward(const Tensor& x, const Tensor& prev_values = Tensor());
  // Incremental decoding (causal, no dropout): x [B, 1, dim] is the next token
  // of each sample; its keys and values join the cache and it attends to
  // every token so far, itself included, as forward's last row would. The
  // elliptical metric is taken over the cached tokens (prev_values: the
  // previous attention layer's values of this token, [B, H, 1, Dh]). Returns
  // y [B, 1, dim] and this token's values.
  AttentionOutput step(const Tensor& x, KVCache& cache, const Tensor& prev_values = Tensor());
  int64_t dim, heads;
  bool causal;
  bool elliptical = false;
  std::shared_ptr<Linear> qkv;    // dim -> 3*dim, registered as "qkv"
  std::shared_ptr<Linear> proj;   // dim -> dim, registered as "proj"
  std::shared_ptr<Dropout> drop;  // on the attention probabilities, registered as "drop"
};

}  // namespace moegrad
