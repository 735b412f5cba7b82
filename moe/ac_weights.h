// The Adaptive Clustering (AC) feature weights of "Tight Clusters Make
// Specialized Experts" (ICLR 2025). The tokens x [n, d] of a MoE layer fall
// into clusters by their label c_i, the previous MoE layer's top-1 expert.
// With n_e tokens in cluster e:
//
//   μ_e = mean of x_i over c_i = e                                 (per feature)
//   s_e = mean |x_i − μ_e|  (MAD)   or   mean (x_i − μ_e)²  (variance)
//   A   = 1 / (s + eps)                                            [E, d]
//   B   = min(A, clip · mean(A))          the mean over all E·d entries (clip <= 0: none)
//   W   = B / mean_e B[e, :]  (per feature)   or   B / mean(B)  (global)
//   w_i = W[c_i]   or, mixing over the previous top-m, Σ_j softmax(g_i)_j W[c_ij]
//
// and the router sees x_i ⊙ w_i: a feature along which a cluster is tight
// (small s) weighs more for its tokens.
//
// ac_cluster_weights returns W in three named steps (ac_weights.cpp): the
// cluster statistics (μ_e, s_e over the tokens grouped by cluster, each sum in
// token order, so results do not depend on the thread count or device), the
// weight table (A, the clip, the scaling) and a hand-written backward through
// all of them (μ, s, the clip threshold and the scaling). The paper detaches
// W: callers get that by passing x.detach().
//
// Small clusters. A cluster with no token has s = 0 (μ = 0), as has a cluster
// of one token, so its row of A is 1/eps (an empty cluster's weighs no
// token; a single token gets it, cut down by the clip). Either raises the
// clip threshold and every feature's mean in the scaling, which shrinks
// every other cluster's weights. ACSmallClusters::Official keeps
// that, as the paper's code does. Neutral gives a cluster of fewer than two
// tokens the row W = 1 and leaves it out of the clip's mean and the scaling's
// means, so the other clusters' weights are what they would be without it.
//
// ac_scale_gather scales each token by its cluster's row in one pass:
// out_i = x_i ⊙ w_i with w_i = Σ_j mix_ij W[idx_ij] (idx [n] or [n, m]; mix
// [n, m] or undefined for weight 1). Backward: dx_i = dy_i ⊙ w_i,
// dW[e] = Σ_{idx_ij = e} mix_ij (dy_i ⊙ x_i) (summed over the (i, j) entries
// grouped by cluster, in entry order), dmix_ij = <dy_i ⊙ x_i, W[idx_ij]>.
//
// ac_token_scale is what the AC router and Soft MoE call: labels from the
// previous layer's assignments, W, and the scaled tokens. Its table has a row
// per expert, or (ACTableRows::LargestIndex, as the paper's code) as many
// rows as the largest expert index among the previous choices plus one, so
// unused experts above it are not empty clusters there.
//
// Across ranks (ACOptions::ranks, data or expert parallel training): the
// statistics of the tokens of every rank, as one process would compute them
// over the global batch. Two all-reduces (dist/communicator.h, summed in rank
// order): the counts n_e and the sums Σ x_i per cluster give μ_e; then the
// spreads Σ |x_i − μ_e| (or Σ (x_i − μ_e)²) give s_e; A, the clip and the
// scaling follow on every rank alike, so W is the same everywhere. These
// statistics are computed on the host (a CUDA x is copied there). A
// differentiable W shapes every rank's loss: its backward all-reduces dW
// (every rank must run it, as every rank builds the same graph), then takes
// this rank's tokens through the one-process formula with the global
// statistics, so each rank's dx is its rows of the one-process dx.
//
// Labels or indices outside [0, E) are an Error naming the first one, on
// either device; on CUDA the grouping runs on the device (cuda/sort.h) and
// the kernels are those of cuda/ac_weights.h.
#pragma once
#include "autograd/ops.h"
#include "dist/communicator.h"

namespace moegrad {

enum class ACStat { MAD, Variance };
enum class ACScaling { PerFeature, Global };
enum class ACSmallClusters { Official, Neutral };
enum class ACTableRows { Experts, LargestIndex };

struct ACOptions {
  ACStat stat = ACStat::MAD;
  double eps = 1e-4;
  double clip = 10.0;
  ACScaling scaling = ACScaling::PerFeature;
  ACSmallClusters small_clusters = ACSmallClusters::Official;
  ACTableRows rows = ACTableRows::Experts;  // ac_token_scale's table size
  // The statistics over every rank's tokens (a world of more than one rank;
  // needs rows = Experts); null: this process's tokens.
  dist::CommPtr ranks = nullptr;
};

Tensor ac_cluster_weights(const Tensor& x, const Tensor& labels, int64_t experts, const ACOptions& options);
Tensor ac_scale_gather(const Tensor& x, const Tensor& weights, const Tensor& index, const Tensor& mix = Tensor());

// What a MoE layer hands to the next AC layer.
struct Assignments {
  Tensor indices;  // int64 [n, k]: experts chosen, column 0 the top-1
  Tensor logits;   // [n, k]: their gate logits (for mixing over the top-m)
  bool defined() const { return indices.defined(); }
};

// The tokens whose clusters give W: by default the routed tokens themselves
// (the batch, as in the paper); at generation, the context so far.
struct ACStatistics {
  Tensor x;              // [n', d]
  Assignments previous;  // their previous assignments (labels: column 0)
};

// The AC scaling of tokens x [n, d] from the previous layer's assignments:
// W [E, d] from the clusters of its top-1 labels, and scaled = x ⊙ w with
// w = W[label], or mixed over the top-m with the softmax of their logits.
// W and the mixing weights are detached unless `differentiable` (x keeps its
// gradient through the scaling either way; dtypes must match). `caller`
// names the layer in errors. With `statistics`, W comes from those tokens'
// clusters instead of x's own.
struct ACScale {
  Tensor W, scaled;
  Tensor index;  // int64 [n, m]: the clusters each token's w mixes (m = 1: its label)
  Tensor mix;    // [n, m]: their mixing weights; undefined for m = 1
};
ACScale ac_token_scale(const Tensor& x, const Assignments& previous, int64_t experts, const ACOptions& options,
                       int64_t mix_m, bool differentiable, const char* caller,
                       const ACStatistics* statistics = nullptr);

}  // namespace moegrad
