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

#include "cuda/sort.h"
#include "tensor/tensor.h"

namespace moegrad {

// What ac_cluster_weights' forward keeps for its backward (float64, on the device).
struct CudaACStats {
  Tensor mu;         // [E, d] per-cluster means
  Tensor dev;        // [E, d] Σ over the cluster of sign(x − μ) (MAD) or 2(x − μ) (variance)
  Tensor a;          // [E, d] A = 1 / (s + eps)
  Tensor q;          // [d] per-feature or [1] global mean of B
  Tensor threshold;  // [1] clip · mean(A), +inf without clip
};

// W [E, d] from x [n, d] and its tokens sorted by cluster (cuda_counting_sort
// of the labels with E buckets). clip <= 0: no clip.
CudaACStats cuda_ac_cluster_weights(const Tensor& x, const CudaCountingSort& clusters, int64_t E, bool mad,
                                    double eps, double clip, bool per_feature, const Tensor& W);
// dx [n, d] from dW [E, d]; labels int64 [n] as sorted into `clusters`.
void cuda_ac_cluster_weights_backward(const Tensor& x, const Tensor& labels, const CudaCountingSort& clusters,
                                      const CudaACStats& stats, bool mad, double clip, bool per_feature,
                                      const Tensor& dW, const Tensor& dx);

// out [n, d] = x ⊙ Σ_j mix[i, j] W[index[i, j]] for index int64 [n, m]; mix
// [n, m], or undefined for weight 1 (then m = 1). Indices already validated.
void cuda_ac_scale_gather(const Tensor& x, const Tensor& W, const Tensor& index, const Tensor& mix,
                          const Tensor& out);
// The backward from dy [n, d]; each of dx [n, d], dW [E, d] and dmix [n, m]
// is written when defined. dW needs `entries`: the n·m index entries (flat
// position i·m + j) sorted by cluster.
void cuda_ac_scale_gather_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& index,
                                   const Tensor& mix, const CudaCountingSort& entries, const Tensor& dx,
                                   const Tensor& dW, const Tensor& dmix);

}  // namespace moegrad
