// The experts of a MoE layer: E FFNs with their weights stacked,
// w1 [E, hidden, dim], b1 [E, hidden], w2 [E, dim, hidden], b2 [E, dim]
// (each expert is Linear, GELU or ReLU, optional dropout, Linear, with
// PyTorch's Linear layout).
// forward runs them on token rows grouped by expert (top-k MoE: one GEMM per
// expert block); forward_batched on a dense [E, N, dim] stack (Soft MoE slots:
// one batched GEMM per layer).
#pragma once
#include "moe/dispatch.h"
#include "nn/layers.h"

namespace moegrad {

// Linear: each weight U(±1/√in) and bias U(±1/√in), as PyTorch's Linear.
// Official: as the paper's code (fastmoe's FMoELinear: kaiming-uniform with
// a = √5 over the stacked [E, out, in] tensor): weights U(±1/√(out·in)),
// about √out smaller, and biases zero.
enum class ExpertInit { Linear, Official };

struct ExpertOptions {
  Activation activation = Activation::Gelu;
  double dropout = 0.0;  // on the hidden activations, in training mode
  ExpertInit init = ExpertInit::Linear;
};

class StackedExperts : public Module {
 public:
  StackedExperts(int64_t experts, int64_t dim, int64_t hidden, const InitOptions& opt = {},
                 const ExpertOptions& options = {});
  Tensor forward(const Tensor& xp, const PlanPtr& plan);
  Tensor forward_batched(const Tensor& xs);
  int64_t experts, dim, hidden;
  ExpertOptions options;
  Tensor w1, b1, w2, b2;
  std::shared_ptr<Dropout> drop;  // registered as "drop" when options.dropout > 0
};

}  // namespace moegrad
