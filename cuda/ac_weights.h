// The Adaptive Clustering feature weights on a CUDA device (ac_weights.cu),
// behind ac_cluster_weights and ac_scale_gather of moe/ac_weights.cpp, which
// validates, sorts the tokens by cluster with cuda_counting_sort and keeps
// what the backward needs. All tensors are contiguous, on one CUDA device,
// float32 or float64 (x's dtype) unless said otherwise; the statistics are
// float64 as on the CPU. Deterministic: every output element is computed by
// one thread (or the E·d table by one block) in a fixed order, and the
// per-cluster sums run over the sorted tokens in token order, as the CPU's.
// Plain C++: callers include it without CUDA headers.
#pragma once
#include <cstdint>

#include "tensor/tensor.h"

namespace moegrad {

// The three steps of ac_cluster_weights. x [n, d] has its tokens grouped by
// cluster: order [n] and offsets [E + 1] (int64) from cuda_counting_sort of
// the labels with E buckets; cluster e's tokens are order[offsets[e],
// offsets[e + 1]) in token order. The statistics and the table are float64.

// 1. mu, s and dev [E, d]: the mean, the spread (MAD or variance) and the sum
// of the deviation's derivative (sign(x − μ) or 2(x − μ)) per cluster and
// feature. An empty cluster gets μ = s = 0.
void cuda_ac_cluster_statistics(const Tensor& x, const Tensor& order, const Tensor& offsets, bool mad,
                                const Tensor& mu, const Tensor& s, const Tensor& dev);
// 2. The weight table from s: A = 1 / (s + eps) [E, d], threshold [1] =
// clip · mean(A) (+inf for clip <= 0), q [d] (per feature) or [1] (global)
// the mean of B = min(A, threshold), and W = B / q [E, d] in x's dtype. With
// `neutral`, a cluster of fewer than two tokens gets W = 1 and is left out
// of both means (all of W is 1 when no cluster has two tokens).
void cuda_ac_weight_table(const Tensor& s, const Tensor& offsets, double eps, double clip, bool per_feature,
                          bool neutral, const Tensor& A, const Tensor& threshold, const Tensor& q, const Tensor& W);
// 3. dx [n, d] from dW [E, d] through the scaling, the clip, A and s (with μ);
// labels int64 [n] as grouped into offsets.
void cuda_ac_cluster_weights_backward(const Tensor& x, const Tensor& labels, const Tensor& offsets, const Tensor& mu,
                                      const Tensor& dev, const Tensor& A, const Tensor& threshold, const Tensor& q,
                                      bool mad, double clip, bool per_feature, bool neutral, const Tensor& dW,
                                      const Tensor& dx);

// out [n, d] = x ⊙ Σ_j mix[i, j] W[index[i, j]] for index int64 [n, m]; mix
// [n, m], or undefined for weight 1 (then m = 1). Indices already validated.
void cuda_ac_scale_gather(const Tensor& x, const Tensor& W, const Tensor& index, const Tensor& mix,
                          const Tensor& out);
// The backward from dy [n, d]; each of dx [n, d], dW [E, d] and dmix [n, m]
// is written when defined. dW needs the n·m index entries (flat position
// i·m + j) grouped by cluster: order and offsets of cuda_counting_sort.
void cuda_ac_scale_gather_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& index,
                                   const Tensor& mix, const Tensor& order, const Tensor& offsets, const Tensor& dx,
                                   const Tensor& dW, const Tensor& dmix);

}  // namespace moegrad
