// The experts of a MoE layer: E GELU FFNs with their weights stacked,
// w1 [E, hidden, dim], b1 [E, hidden], w2 [E, dim, hidden], b2 [E, dim]
// (each expert is a Linear-GELU-Linear with PyTorch's Linear layout).
// forward runs them on token rows grouped by expert (top-k MoE: one GEMM per
// expert block); forward_batched on a dense [E, N, dim] stack (Soft MoE slots:
// one batched GEMM per layer).
#pragma once
#include "moe/dispatch.h"
#include "nn/module.h"

namespace moegrad {

class StackedExperts : public Module {
 public:
  StackedExperts(int64_t experts, int64_t dim, int64_t hidden, const InitOptions& opt = {});
  Tensor forward(const Tensor& xp, const PlanPtr& plan);
  Tensor forward_batched(const Tensor& xs);
  int64_t experts, dim, hidden;
  Tensor w1, b1, w2, b2;
};

}  // namespace moegrad
