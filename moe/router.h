// Routers: the top-k router (SMoE / Switch / GShard) and the AC router, both
// behind one virtual forward(x, previous).
//
// Top-k: logits = gate(x); the k largest per token, sorted (column 0 is the
// argmax); scores = softmax over those k logits. Switch load-balance loss
// L = E · Σ_e f_e P_e (f_e: share of routed slots sent to e, P_e: mean router
// probability of e); optional z-loss mean(logsumexp(logits)²). The top-k
// router ignores `previous`.
//
// AC: takes the previous MoE layer's assignments. Feature weights W [E, d]
// from the clusters of that layer's top-1 labels; token i is scaled by
// w_i = W[c_i] (or mixed over the previous top-m with the softmax of those
// logits), and routed with logits = gate(x ⊙ w) (ac_token_scale,
// moe/ac_weights.h). In the paper's detached mode no gradient flows through
// W or the mixing weights; the differentiable mode backpropagates through
// all of it.
//
// The gate is linear (x Gᵀ + b) or XMoE-style ("cosine"): expert embeddings
// normalised to unit length, logits = x · Êᵀ (the token itself is not
// normalised). The paper's code starts the embeddings orthogonal (gain 0.32)
// and rescales them in place to norm 1.5 before each forward, which the
// normalisation then cancels: it changes only how an optimizer's steps
// compare with the embeddings' size (RouterConfig::embedding_gain, _norm).
//
// Everything is built from ops that run on either device (matmul, topk,
// softmax, ...), so a router whose weights and tokens are on a CUDA device
// runs there with the same graph.
#pragma once
#include "moe/ac_weights.h"
#include "nn/layers.h"

namespace moegrad {

enum class GateKind { Linear, Cosine };

struct RouterOutput {
  Tensor logits;        // [n, E]
  Tensor indices;       // int64 [n, k], sorted
  Tensor topk_logits;   // [n, k]
  Tensor scores;        // [n, k], softmax over the k logits
  Tensor balance_loss;  // scalar
  Tensor z_loss;        // scalar
  Tensor scaled_input;  // AC: x ⊙ w (the experts' input when AC scales it); else x
  Tensor ac_weights;    // AC: W [E, d]; else undefined
  Tensor ac_index, ac_mix;  // AC: the clusters each token's w mixes and their weights (ACScale)
  Assignments assignments() const { return {indices, topk_logits}; }
};

struct RouterConfig {
  int64_t dim = 0, experts = 0, k = 2;
  GateKind gate = GateKind::Linear;
  // Cosine gate only: > 0 starts the embeddings orthogonal with this gain
  // (else U(±1/√dim)); > 0 rescales each embedding in place to this norm
  // before every forward.
  double embedding_gain = 0, embedding_norm = 0;
};

// The k largest logits per token [n, E], sorted (column 0 the argmax, ties to
// the lower expert), and the softmax over those k. values and scores are
// differentiable.
struct RouterTopK {
  Tensor values;   // [n, k]
  Tensor indices;  // int64 [n, k]
  Tensor scores;   // [n, k]
};
RouterTopK router_topk_softmax(const Tensor& logits, int64_t k);

// Switch balance loss from the full logits [n, E] and the chosen indices [n, k].
Tensor switch_balance_loss(const Tensor& logits, const Tensor& indices);
// mean over tokens of logsumexp(logits)².
Tensor router_z_loss(const Tensor& logits);

class TopKRouter : public Module {
 public:
  TopKRouter(const RouterConfig& config, const InitOptions& opt = {});
  // x [n, dim]; previous: the last MoE layer's assignments and statistics:
  // the tokens whose clusters give W (x itself when null); only the AC router
  // reads them.
  virtual RouterOutput forward(const Tensor& x, const Assignments& previous = {},
                               const ACStatistics* statistics = nullptr);
  // logits of the gate for (possibly scaled) tokens x [n, d]
  Tensor gate_logits(const Tensor& x);
  RouterConfig config;
  Tensor weight, bias;  // Linear: weight [E, d], bias [E]; Cosine: weight = expert embeddings [E, d]

 protected:
  RouterOutput route(const Tensor& logits) const;
};

struct ACConfig {
  ACOptions stats;              // stats.ranks: statistics over every rank's tokens, in training mode only
  int64_t mix_m = 1;            // mix over the previous top-m (1: labels only)
  bool differentiable = false;  // false: the paper's detached W
};

class ACRouter : public TopKRouter {
 public:
  ACRouter(const RouterConfig& config, const ACConfig& ac, const InitOptions& opt = {});
  RouterOutput forward(const Tensor& x, const Assignments& previous,
                       const ACStatistics* statistics = nullptr) override;
  ACConfig ac;
};

}  // namespace moegrad
