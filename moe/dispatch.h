// Dispatch and combine for a top-k MoE layer.
//
// make_routing_plan sorts the n·k (token, choice) slots by expert with a
// stable counting sort (histogram, exclusive scan, scatter), so expert e's
// slots occupy rows [offsets[e], offsets[e] + counts[e]) of the permuted
// buffer. Within an expert, top-1 choices come first, then top-2, each in
// token order; with a capacity, the slots past it in that order are dropped
// (so a token's first choice wins over another token's second, as in GShard).
//
// The three differentiable ops of the expert computation:
//   xp = moe_permute(x, plan)                 [rows, d]  rows of x in expert order
//   yp = grouped_linear(xp, W, b, plan)       [rows, o]  block e: xp_e W[e]ᵀ + b[e]
//   y  = moe_combine(yp, scores, plan)        [n, o]     y_i = Σ_j s_ij yp[pos_ij]
// Each expert is one GEMM over its block; no loop over tokens per expert.
//
// The plan's maps are int64 tensors on the device of the expert indices it
// was made from, and the three ops take tensors of that device: each builds
// one autograd node and its device picks the kernels (on CUDA: the plan from
// cuda/sort.h's counting sort over the same (choice, token) order, so it
// equals the CPU's element for element; the gathers and sums of
// cuda/moe_dispatch.h; one cuBLAS GEMM per expert block). Counts and offsets
// live on the host, since every device launches its per-expert products from
// them (a CUDA plan copies E + 1 offsets back).
#pragma once
#include <memory>
#include <vector>

#include "autograd/ops.h"

namespace moegrad {

struct RoutingPlan;
using PlanPtr = std::shared_ptr<const RoutingPlan>;

struct RoutingPlan {
  int64_t tokens = 0, k = 0, experts = 0, capacity = 0;  // capacity 0: unlimited
  std::vector<int64_t> counts;   // [E] rows per expert (after dropping), on the host
  std::vector<int64_t> offsets;  // [E + 1] exclusive prefix sum of counts, on the host
  Tensor position;               // int64 [n, k]: row of slot (i, j), -1 if dropped
  Tensor row_token;              // int64 [rows]: token of each row
  Tensor row_slot;               // int64 [rows]: slot index i * k + j of each row
  Device device() const { return position.device(); }
  int64_t rows() const { return offsets.empty() ? 0 : offsets.back(); }
  int64_t dropped() const { return tokens * k - rows(); }
};

// expert_index: int64 [n, k] with values in [0, experts). capacity_factor
// (finite) <= 0 means no capacity; otherwise capacity = ceil(capacity_factor
// * n * k / E), at most n * k.
PlanPtr make_routing_plan(const Tensor& expert_index, int64_t experts, double capacity_factor = 0.0);

Tensor moe_permute(const Tensor& x, const PlanPtr& plan);
// weight: [E, out, in] (stacked Linear weights); bias: [E, out] or undefined.
Tensor grouped_linear(const Tensor& xp, const Tensor& weight, const Tensor& bias, const PlanPtr& plan);
// scores: [n, k]; a dropped slot contributes nothing and gets zero gradient.
Tensor moe_combine(const Tensor& yp, const Tensor& scores, const PlanPtr& plan);

}  // namespace moegrad
