// The AC feature-weight kernels of ac_weights.h, transcribing the CPU code of
// moe/ac_weights.cpp (see the equations there). Per-cluster statistics are a
// segmented reduction over the tokens sorted by cluster: one thread per
// (cluster, feature) walks its cluster's segment in token order, so its sums
// are the CPU's sums in the CPU's order (float64). The O(E·d) table work that
// needs whole-table sums (mean of A, the global mean of B, the clip's
// gradient) runs in one block with the fixed-order block_sum. dW of the
// scale-gather is the same segmented sum over the sorted index entries. No
// atomics anywhere: every result is the same from run to run.
#include <cmath>

#include "cuda/ac_weights.h"
#include "cuda/launch.cuh"

namespace moegrad {

namespace {

using cuda::kThreads;

// Threads of the one block that works on the E·d table.
constexpr int kTableThreads = 1024;

// B = min(A, threshold): the clipped weight.
__device__ double clipped_b(double a, double threshold) { return a > threshold ? threshold : a; }

// Whether cluster e takes part in the table: always, or (neutral) when it
// holds at least two tokens.
__device__ bool in_table(const int64_t* offsets, int64_t e, bool neutral) {
  return !neutral || offsets[e + 1] - offsets[e] >= 2;
}

// One thread per (cluster e, feature f): μ, s and the sum of the deviation's
// derivative over the tokens of e, taken from order[offsets[e], offsets[e + 1])
// in token order. An empty cluster gets μ = s = 0.
template <typename T>
__global__ void cluster_stats(const T* x, const int64_t* order, const int64_t* offsets, int64_t E, int64_t d,
                              bool mad, double* mu, double* s, double* dev) {
  MG_GRID_STRIDE(j, E * d) {
    const int64_t e = j / d, f = j - e * d;
    const int64_t begin = offsets[e], end = offsets[e + 1], count = end - begin;
    double m = 0;
    for (int64_t k = begin; k < end; ++k) m += static_cast<double>(x[order[k] * d + f]);
    m /= count > 1 ? count : 1;
    double spread = 0, dv = 0;
    for (int64_t k = begin; k < end; ++k) {
      const double r = static_cast<double>(x[order[k] * d + f]) - m;
      spread += mad ? fabs(r) : r * r;
      dv += mad ? (r > 0) - (r < 0) : 2 * r;
    }
    mu[j] = m;
    dev[j] = dv;
    s[j] = count > 0 ? spread / count : 0.0;
  }
}

// One block: A = 1 / (s + eps), threshold = clip · mean(A) (+inf for clip <=
// 0), B = min(A, threshold), q = the per-feature (over the clusters, in
// cluster order) or global mean of B, W = B / q; the means over the clusters
// in the table only, and W = 1 outside it.
template <typename T>
__global__ void __launch_bounds__(kTableThreads)
    cluster_weights_table(const double* s, const int64_t* offsets, int64_t E, int64_t d, double eps, double clip,
                          bool per_feature, bool neutral, double* A, double* q, double* threshold, T* W) {
  const int64_t size = E * d;
  int64_t members = 0;  // clusters in the table
  for (int64_t e = 0; e < E; ++e) members += in_table(offsets, e, neutral);
  double part = 0;
  for (int64_t j = threadIdx.x; j < size; j += blockDim.x) {
    A[j] = 1.0 / (s[j] + eps);
    if (in_table(offsets, j / d, neutral)) part += A[j];
  }
  const double mean_a = cuda::block_sum(part) / static_cast<double>(members * d);
  const double thr = clip > 0 && members > 0 ? clip * mean_a : INFINITY;
  part = 0;
  if (!per_feature)
    for (int64_t j = threadIdx.x; j < size; j += blockDim.x)
      if (in_table(offsets, j / d, neutral)) part += clipped_b(A[j], thr);
  const double total_b = cuda::block_sum(part);
  if (per_feature) {
    for (int64_t f = threadIdx.x; f < d; f += blockDim.x) {
      double sum = 0;
      for (int64_t e = 0; e < E; ++e)
        if (in_table(offsets, e, neutral)) sum += clipped_b(A[e * d + f], thr);
      q[f] = members > 0 ? sum / members : 1.0;
    }
  } else if (threadIdx.x == 0) {
    q[0] = members > 0 ? total_b / (members * d) : 1.0;
  }
  if (threadIdx.x == 0) *threshold = thr;
  __syncthreads();  // every thread reads the q written above
  for (int64_t j = threadIdx.x; j < size; j += blockDim.x)
    W[j] = in_table(offsets, j / d, neutral) ? static_cast<T>(clipped_b(A[j], thr) / q[per_feature ? j % d : 0])
                                             : T(1);
}

// One block, the backward of the table: through W = B / q into dB, through the
// clip (the threshold depends on every A in the table) into dA, through
// A = 1 / (s + eps) and s = D / n_e into ds (= d loss / dD) and dmu (the part
// through μ, per token of the cluster). Clusters outside the table get none.
// dB is scratch [E, d].
template <typename T>
__global__ void __launch_bounds__(kTableThreads)
    cluster_weights_table_backward(const T* dW, const double* A, const double* dev, const double* q,
                                   const double* threshold, const int64_t* offsets, int64_t E, int64_t d, double clip,
                                   bool per_feature, bool neutral, double* dB, double* ds, double* dmu) {
  const int64_t size = E * d;
  const double thr = *threshold;
  int64_t members = 0;
  for (int64_t e = 0; e < E; ++e) members += in_table(offsets, e, neutral);
  const double in_mean = per_feature ? members : members * d;  // entries behind each mean q
  double part = 0;
  if (!per_feature)
    for (int64_t j = threadIdx.x; j < size; j += blockDim.x)
      if (in_table(offsets, j / d, neutral)) part += static_cast<double>(dW[j]) * clipped_b(A[j], thr);
  const double dot_all = cuda::block_sum(part);
  if (per_feature) {
    for (int64_t f = threadIdx.x; f < d; f += blockDim.x) {
      double dot = 0;
      for (int64_t e = 0; e < E; ++e)
        if (in_table(offsets, e, neutral)) dot += static_cast<double>(dW[e * d + f]) * clipped_b(A[e * d + f], thr);
      for (int64_t e = 0; e < E; ++e)
        dB[e * d + f] = in_table(offsets, e, neutral)
                            ? static_cast<double>(dW[e * d + f]) / q[f] - dot / (in_mean * q[f] * q[f])
                            : 0.0;
    }
  } else {
    for (int64_t j = threadIdx.x; j < size; j += blockDim.x)
      dB[j] = in_table(offsets, j / d, neutral) ? static_cast<double>(dW[j]) / q[0] - dot_all / (in_mean * q[0] * q[0])
                                                : 0.0;
  }
  __syncthreads();  // dB is read below by other threads than wrote it
  part = 0;
  for (int64_t j = threadIdx.x; j < size; j += blockDim.x)
    if (in_table(offsets, j / d, neutral) && A[j] > thr) part += dB[j];
  const double dthreshold = cuda::block_sum(part);
  const double share = isfinite(thr) ? clip / static_cast<double>(members * d) : 0.0;
  for (int64_t j = threadIdx.x; j < size; j += blockDim.x) {
    const int64_t e = j / d, count = offsets[e + 1] - offsets[e];
    const double dA = in_table(offsets, e, neutral) ? (A[j] > thr ? 0.0 : dB[j]) + share * dthreshold : 0.0;
    ds[j] = count > 0 ? -dA * A[j] * A[j] / count : 0.0;
    dmu[j] = count > 0 ? -ds[j] * dev[j] / count : 0.0;
  }
}

// One thread per element of x: dx = ds · (the deviation's derivative) + dmu of its cluster.
template <typename T>
__global__ void cluster_weights_dx(const T* x, const int64_t* labels, const double* mu, const double* ds,
                                   const double* dmu, int64_t n, int64_t d, bool mad, T* dx) {
  MG_GRID_STRIDE(t, n * d) {
    const int64_t i = t / d, f = t - i * d;
    const int64_t j = labels[i] * d + f;
    const double r = static_cast<double>(x[t]) - mu[j];
    const double local = mad ? (r > 0) - (r < 0) : 2 * r;
    dx[t] = static_cast<T>(ds[j] * local + dmu[j]);
  }
}

// One thread per element of out: out[i, f] = x[i, f] · Σ_j mix[i, j] W[index[i, j], f].
template <typename T>
__global__ void scale_gather(const T* x, const T* W, const int64_t* index, const T* mix, int64_t n, int64_t m,
                             int64_t d, T* out) {
  MG_GRID_STRIDE(t, n * d) {
    const int64_t i = t / d, f = t - i * d;
    T w = (mix ? mix[i * m] : T(1)) * W[index[i * m] * d + f];
    for (int64_t j = 1; j < m; ++j) w += mix[i * m + j] * W[index[i * m + j] * d + f];
    out[t] = w * x[t];
  }
}

// One thread per element of dx: dx[i, f] = dy[i, f] · Σ_j mix[i, j] W[index[i, j], f].
template <typename T>
__global__ void scale_gather_dx(const T* dy, const T* W, const int64_t* index, const T* mix, int64_t n, int64_t m,
                                int64_t d, T* dx) {
  MG_GRID_STRIDE(t, n * d) {
    const int64_t i = t / d, f = t - i * d;
    T w = 0;
    for (int64_t j = 0; j < m; ++j) w += (mix ? mix[i * m + j] : T(1)) * W[index[i * m + j] * d + f];
    dx[t] = dy[t] * w;
  }
}

// One thread per entry (i, j): dmix[i, j] = <dy_i ⊙ x_i, W[index[i, j]]>, features in order.
template <typename T>
__global__ void scale_gather_dmix(const T* dy, const T* x, const T* W, const int64_t* index, int64_t n, int64_t m,
                                  int64_t d, T* dmix) {
  MG_GRID_STRIDE(p, n * m) {
    const int64_t i = p / m;
    const T* row = W + index[p] * d;
    T dot = 0;
    for (int64_t f = 0; f < d; ++f) dot += dy[i * d + f] * x[i * d + f] * row[f];
    dmix[p] = dot;
  }
}

// One thread per (cluster e, feature f): dW[e, f] = Σ mix_p dy[i, f] x[i, f]
// over the entries p = i·m + j of cluster e, taken from order[offsets[e],
// offsets[e + 1]) in entry order (the CPU's order). An empty cluster gets 0.
template <typename T>
__global__ void scale_gather_dW(const T* dy, const T* x, const T* mix, const int64_t* order, const int64_t* offsets,
                                int64_t E, int64_t m, int64_t d, T* dW) {
  MG_GRID_STRIDE(j, E * d) {
    const int64_t e = j / d, f = j - e * d;
    T s = 0;
    for (int64_t k = offsets[e]; k < offsets[e + 1]; ++k) {
      const int64_t p = order[k], i = p / m;
      s += (mix ? mix[p] : T(1)) * dy[i * d + f] * x[i * d + f];
    }
    dW[j] = s;
  }
}

Tensor f64(const Shape& shape, Device device) { return Tensor::empty(shape, DType::Float64, device); }

}  // namespace

void cuda_ac_cluster_statistics(const Tensor& x, const Tensor& order, const Tensor& offsets, bool mad,
                                const Tensor& mu, const Tensor& s, const Tensor& dev) {
  const int64_t E = mu.size(0), d = mu.size(1);
  if (E * d == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "ac_cluster_weights", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cluster_stats<T><<<cuda::grid_for(E * d), kThreads>>>(x.data<T>(), order.data<int64_t>(),
                                                         offsets.data<int64_t>(), E, d, mad, mu.data<double>(),
                                                         s.data<double>(), dev.data<double>());
  });
  cuda::check_launch("cluster_stats");
}

void cuda_ac_weight_table(const Tensor& s, const Tensor& offsets, double eps, double clip, bool per_feature,
                          bool neutral, const Tensor& A, const Tensor& threshold, const Tensor& q, const Tensor& W) {
  const int64_t E = s.size(0), d = s.size(1);
  if (E * d == 0) return;
  cuda::DeviceGuard guard(s.device().index);
  dispatch_float(W.dtype(), "ac_cluster_weights", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cluster_weights_table<T><<<1, kTableThreads>>>(s.data<double>(), offsets.data<int64_t>(), E, d, eps, clip,
                                                   per_feature, neutral, A.data<double>(), q.data<double>(),
                                                   threshold.data<double>(), W.data<T>());
  });
  cuda::check_launch("cluster_weights_table");
}

void cuda_ac_cluster_weights_backward(const Tensor& x, const Tensor& labels, const Tensor& offsets, const Tensor& mu,
                                      const Tensor& dev, const Tensor& A, const Tensor& threshold, const Tensor& q,
                                      bool mad, double clip, bool per_feature, bool neutral, const Tensor& dW,
                                      const Tensor& dx) {
  const int64_t n = x.size(0), d = x.size(1), E = A.size(0);
  if (n * d == 0) return;
  const Device dev_id = x.device();
  cuda::DeviceGuard guard(dev_id.index);
  Tensor dB = f64({E, d}, dev_id), ds = f64({E, d}, dev_id), dmu = f64({E, d}, dev_id);
  dispatch_float(x.dtype(), "ac_cluster_weights backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    cluster_weights_table_backward<T><<<1, kTableThreads>>>(
        dW.data<T>(), A.data<double>(), dev.data<double>(), q.data<double>(), threshold.data<double>(),
        offsets.data<int64_t>(), E, d, clip, per_feature, neutral, dB.data<double>(), ds.data<double>(),
        dmu.data<double>());
    cuda::check_launch("cluster_weights_table_backward");
    cluster_weights_dx<T><<<cuda::grid_for(n * d), kThreads>>>(x.data<T>(), labels.data<int64_t>(),
                                                              mu.data<double>(), ds.data<double>(),
                                                              dmu.data<double>(), n, d, mad, dx.data<T>());
    cuda::check_launch("cluster_weights_dx");
  });
}

void cuda_ac_scale_gather(const Tensor& x, const Tensor& W, const Tensor& index, const Tensor& mix,
                          const Tensor& out) {
  const int64_t n = index.size(0), m = index.size(1), d = W.size(1);
  if (n * d == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "ac_scale_gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    scale_gather<T><<<cuda::grid_for(n * d), kThreads>>>(x.data<T>(), W.data<T>(), index.data<int64_t>(),
                                                        mix.defined() ? mix.data<T>() : nullptr, n, m, d,
                                                        out.data<T>());
  });
  cuda::check_launch("scale_gather");
}

void cuda_ac_scale_gather_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& index,
                                   const Tensor& mix, const Tensor& order, const Tensor& offsets, const Tensor& dx,
                                   const Tensor& dW, const Tensor& dmix) {
  const int64_t n = index.size(0), m = index.size(1), E = W.size(0), d = W.size(1);
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "ac_scale_gather backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* mp = mix.defined() ? mix.data<T>() : nullptr;
    if (dx.defined() && n * d > 0) {
      scale_gather_dx<T><<<cuda::grid_for(n * d), kThreads>>>(dy.data<T>(), W.data<T>(), index.data<int64_t>(), mp,
                                                             n, m, d, dx.data<T>());
      cuda::check_launch("scale_gather_dx");
    }
    if (dmix.defined() && n * m > 0) {
      scale_gather_dmix<T><<<cuda::grid_for(n * m), kThreads>>>(dy.data<T>(), x.data<T>(), W.data<T>(),
                                                               index.data<int64_t>(), n, m, d, dmix.data<T>());
      cuda::check_launch("scale_gather_dmix");
    }
    if (dW.defined() && E * d > 0) {
      scale_gather_dW<T><<<cuda::grid_for(E * d), kThreads>>>(dy.data<T>(), x.data<T>(), mp,
                                                             order.data<int64_t>(), offsets.data<int64_t>(), E, m,
                                                             d, dW.data<T>());
      cuda::check_launch("scale_gather_dW");
    }
  });
}

}  // namespace moegrad
