// The Adaptive Clustering (AC) feature weights of "Tight Clusters Make
// Specialized Experts" (ICLR 2025), as two differentiable ops with
// hand-written backward. For x [n, d] and cluster labels c [n] (the previous
// MoE layer's top-1 experts), with n_e tokens in cluster e:
//
//   μ_e = mean of x_i over c_i = e
//   s_e = mean |x_i − μ_e|   (MAD)   or   mean (x_i − μ_e)²   (variance)
//   A   = 1 / (s + eps)                                   [E, d]
//   B   = min(A, clip · mean(A))                          (clip <= 0: no clip)
//   W   = B / mean_e B[e, :]  (per feature)  or  B / mean(B)  (global)
//
// ac_cluster_weights returns W. CPU kernels: one pass over the tokens for the
// per-cluster sums, one for the deviations, then O(E·d) work; both passes
// split the feature columns between threads, so sums are taken in token
// order and the result does not depend on the thread count. CUDA tensors
// (labels and index on x's device) take cuda/ac_weights.cu: the tokens are
// sorted by cluster with the stable counting sort of cuda/sort.h and each
// (cluster, feature) sums its segment in the same token order. An empty cluster
// has μ = s = 0 and so hits the clip. The backward carries the full gradient
// through μ, s, the clip threshold and the scaling (the paper detaches W;
// callers get that by passing x.detach()).
//
// ac_scale_gather scales each token by its cluster's row in one pass:
// out_i = x_i ⊙ w_i with w_i = Σ_j mix_ij W[idx_ij] (idx [n] or [n, m]; mix
// [n, m] or undefined for weight 1). Backward: dx_i = dy_i ⊙ w_i,
// dW[e] = Σ_{idx_ij = e} mix_ij (dy_i ⊙ x_i) (columns split between threads,
// sums in token order; on CUDA a segmented sum over the (i, j) entries
// sorted by cluster), dmix_ij = <dy_i ⊙ x_i, W[idx_ij]>. Labels or indices
// outside [0, E) are an Error naming the first one, on either device.
#pragma once
#include "autograd/ops.h"

namespace moegrad {

enum class ACStat { MAD, Variance };
enum class ACScaling { PerFeature, Global };

struct ACOptions {
  ACStat stat = ACStat::MAD;
  double eps = 1e-4;
  double clip = 10.0;
  ACScaling scaling = ACScaling::PerFeature;
};

Tensor ac_cluster_weights(const Tensor& x, const Tensor& labels, int64_t experts, const ACOptions& options);
Tensor ac_scale_gather(const Tensor& x, const Tensor& weights, const Tensor& index, const Tensor& mix = Tensor());

}  // namespace moegrad
