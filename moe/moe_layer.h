// The MoE feed-forward layer: a router (top-k, or AC fed with the previous
// MoE layer's assignments) picks k experts per token; tokens are permuted
// into contiguous per-expert blocks, each expert (an FFN, weights stacked
// as [E, out, in]) runs as one GEMM per block, and the outputs are combined
// with the gate scores. Routing statistics of the last forward are kept for
// logging. With the parameters and tokens on a CUDA device every step runs
// there (moe/router.h, moe/dispatch.h); what comes back to the host: the
// plan's offsets, the chosen experts for the balance loss's shares (and for
// an AC table sized by the largest previous choice), and the statistics (the
// two loss values; for AC layers W and the labels).
//
// Expert parallel (a communicator of N > 1 ranks): the E experts are split
// over the ranks, rank r owning experts [r·E/N, (r+1)·E/N); its `experts`
// hold only those (initialised as the same experts of a one-process layer),
// the router is replicated. Each rank routes its own tokens; the rows of its
// plan, in expert order, go to the experts' owners (an all-to-all of the
// per-expert counts, then one of the rows), the owner runs its experts on
// all the rows it received, and a second all-to-all returns the outputs for
// the combine. The backward is the two exchanges reversed
// (dist/all_to_all_op.h). Every rank must call forward (and backward) together.
#pragma once
#include <string>

#include "dist/communicator.h"
#include "moe/experts.h"
#include "moe/router.h"

namespace moegrad {

struct MoEConfig {
  int64_t dim = 0, hidden = 0, experts = 0, k = 2;
  GateKind gate = GateKind::Linear;
  double embedding_gain = 0, embedding_norm = 0;  // cosine gate: see RouterConfig
  ExpertOptions expert;                           // activation, dropout, init
  double capacity_factor = 0.0;     // <= 0: no capacity, no dropping
  bool use_ac = false;              // AC router (needs previous assignments)
  ACConfig ac;
  bool scale_expert_input = false;  // AC: experts see x ⊙ w (Swin variant)
};

struct RoutingStats {
  std::vector<int64_t> tokens_per_expert;  // routed slots per expert (after dropping)
  int64_t dropped = 0;                     // slots dropped by the capacity
  double balance_loss = 0, z_loss = 0;
  // AC weights W (AC layers only): spread over experts and features
  double ac_mean = 0, ac_std = 0, ac_min = 0, ac_max = 0;
  // AC layers only: clusters (rows of W) with no token and with one token,
  // and the mean of the tokens' weights w_i over tokens and features
  double ac_empty = 0, ac_single = 0, ac_token_weight = 0;
};

// Fills the AC fields of stats from W [rows, d], the clusters each token's
// w mixes (index int64 [n, m], column 0 its label) and their mixing weights
// (mix [n, m], undefined for m = 1).
void ac_weight_stats(const Tensor& W, const Tensor& index, const Tensor& mix, RoutingStats& stats);

struct MoEOutput {
  Tensor y;             // [n, d]
  Tensor balance_loss;  // scalar
  Tensor z_loss;        // scalar
  Assignments assignments;
};

class MoELayer : public Module {
 public:
  // expert_comm: the ranks the experts are split over (nullptr or one rank:
  // all experts here). Error naming both numbers unless they divide E.
  MoELayer(const MoEConfig& config, const InitOptions& opt = {}, dist::CommPtr expert_comm = nullptr);
  // x: [n, d] tokens; previous: the last MoE layer's assignments (AC only);
  // statistics: the tokens whose clusters give the AC weights (x when null).
  MoEOutput forward(const Tensor& x, const Assignments& previous = {}, const ACStatistics* statistics = nullptr);
  MoEConfig config;
  std::shared_ptr<TopKRouter> router;
  std::shared_ptr<StackedExperts> experts;
  RoutingStats last_stats;
  dist::CommPtr expert_comm;  // set when the experts are split over several ranks
  int64_t first_expert = 0;   // the global index of experts' first expert

 private:
  // The experts' outputs for xp (the plan's rows, in expert order), each row
  // sent to the rank that owns its expert and back. plan null: this rank
  // failed to route (failure says why); the first exchange tells every rank,
  // and all throw the lowest failing rank's error.
  Tensor run_experts_over_ranks(const Tensor& xp, const RoutingPlan* plan, const std::string& failure);
};

}  // namespace moegrad
