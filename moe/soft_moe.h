// Soft MoE (Puigcerver et al., "From Sparse to Soft Mixtures of Experts"),
// optionally with the Adaptive Clustering (AC) feature weights. For a batch
// x [b, m, d] with E experts of p slots each:
//
//   X̃ = X / ‖X‖ per token                 Φ̃ = scale · Φ / ‖Φ‖ per slot column
//   (AC: X̃ ← X̃ ⊙ w, w from the clusters of the previous MoE layer's labels)
//   L = X̃ Φ̃                               [b, m, E·p]
//   D = softmax of L over the m tokens    C = softmax of L over the E·p slots
//   X_s = Dᵀ X̃                            [b, E·p, d]: each slot a mix of tokens
//   Y_s[e] = Expert_e(X_s[e])              the GELU FFN of expert e on its p slots
//   Y = C Y_s                              [b, m, d]: each token a mix of slots
//
// The experts run batched: slots are arranged as [E, b·p, d] and each FFN
// layer is one batched matmul with the stacked weights. Everything is built
// from differentiable ops, so the backward is their hand-written backwards;
// on a CUDA device (x and the parameters on one device) they run their
// kernels, and the handed-on assignments stay on that device.
// The layer hands on, per token, the experts (slot / p) of its top mix_k slots
// by combine weight, column 0 being the top slot's expert: the next AC layer's
// labels.
#pragma once
#include "moe/experts.h"
#include "moe/moe_layer.h"

namespace moegrad {

struct SoftMoEConfig {
  int64_t dim = 0, hidden = 0, experts = 0, slots = 1;  // slots per expert (p)
  bool use_ac = false;
  ACOptions ac{ACStat::MAD, 0.35, 5.0, ACScaling::Global};  // the paper's Soft MoE settings
  int64_t mix_k = 8;             // AC: labels handed on = experts of each token's top mix_k slots (clamped to E*p)
  bool differentiable = false;   // AC: false = W detached as in the paper
};

struct SoftMoEOutput {
  Tensor y;                 // [b, m, dim]
  Assignments assignments;  // indices int64 [b*m, k]: expert (slot / p) of each token's top k = min(mix_k, E*p)
                            // slots by combine weight, column 0 the top slot's expert; logits [b*m, k]: those
                            // slots' logits
  Tensor dispatch, combine; // [b, m, E*p]: D (each slot's column sums to 1 over the m tokens) and C (each token's
                            // row sums to 1 over the slots), for logging and tests
};

class SoftMoE : public Module {
 public:
  SoftMoE(const SoftMoEConfig& config, const InitOptions& opt = {});
  // x [b, m, dim]; previous: the last MoE layer's assignments over the b*m tokens (AC only; without them an AC
  // layer is an Error, as for the AC router). AC mixes over the previous top min(mix_k, previous columns).
  SoftMoEOutput forward(const Tensor& x, const Assignments& previous = {});
  SoftMoEConfig config;
  Tensor phi;    // [dim, experts * slots], LeCun-normal init (std 1/sqrt(dim)), registered "phi"
  Tensor scale;  // [1] init 1, registered "scale"
  std::shared_ptr<StackedExperts> experts;
  RoutingStats last_stats;  // tokens per expert by top slot; AC weight spread
};

}  // namespace moegrad
