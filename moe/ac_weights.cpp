// AC feature weights (see ac_weights.h): the three steps of
// ac_cluster_weights — cluster statistics, weight table, backward — then the
// scale-gather and the token scaling the routers call. Each op builds one
// node; the device picks the kernels (CPU loops here, cuda/ac_weights.h on
// CUDA). The statistics and the table are float64 on both devices.
#include "moe/ac_weights.h"

#include <algorithm>
#include <cmath>

#include "autograd/node.h"
#include "autograd/ops/util.h"
#include "cuda/ac_weights.h"
#include "cuda/sort.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

// ---- grouping by cluster ----

// Error naming the first key outside [0, E): "<op>: <what> <key> <where> <position> outside [0, E)".
void check_range(const std::vector<int64_t>& keys, int64_t E, const char* op, const char* what, const char* where) {
  for (size_t i = 0; i < keys.size(); ++i)
    MG_CHECK(keys[i] >= 0 && keys[i] < E, op, ": ", what, " ", keys[i], " ", where, " ", i, " outside [0, ", E, ")");
}

// The positions of int64 keys [m] grouped by key with a stable counting sort:
// key e holds order[offsets[e], offsets[e + 1]), in position order. int64 on
// the keys' device; the range is checked on either (on CUDA by the sort, and
// only when it fails are the keys read back, to name the first bad one).
struct Clusters {
  Tensor order, offsets;
};

Clusters group_by_cluster(const Tensor& keys_in, int64_t E, const char* op, const char* what, const char* where) {
  const Tensor keys = contiguous(keys_in);
  if (keys.device().is_cuda() && E > 0) {
    try {
      CudaCountingSort sorted = MOEGRAD_CUDA(cuda_counting_sort(keys, E, op));
      return {sorted.order, sorted.offsets};
    } catch (const Error&) {  // a key out of range: name the first, as the CPU does
      std::vector<int64_t> host;
      try {
        host = keys.to_indices();
      } catch (const Error&) {  // the device itself failed: the sort's error says so
      }
      check_range(host, E, op, what, where);
      throw;
    }
  }
  const std::vector<int64_t> k = keys.to_indices();
  check_range(k, E, op, what, where);
  std::vector<int64_t> offsets(E + 1, 0), order(k.size());
  for (int64_t key : k) offsets[key + 1]++;
  for (int64_t e = 0; e < E; ++e) offsets[e + 1] += offsets[e];
  std::vector<int64_t> next(offsets.begin(), offsets.end() - 1);
  for (size_t i = 0; i < k.size(); ++i) order[next[k[i]]++] = static_cast<int64_t>(i);
  const Device device = keys.device();
  return {Tensor::from_indices(order, {static_cast<int64_t>(k.size())}).to(device),
          Tensor::from_indices(offsets, {E + 1}).to(device)};
}

// Calls f(f0, f1) on column ranges of [0, d) in parallel when n·d is large.
template <typename F>
void over_columns(int64_t n, int64_t d, F f) {
  parallel_for(d, grain_for(n), f);
}

Tensor f64(const Shape& shape, Device device) { return Tensor::empty(shape, DType::Float64, device); }

// ---- 1. the cluster statistics: μ_e and s_e per feature ----

struct ClusterStats {
  Clusters clusters;  // the tokens grouped by label
  Tensor mu, s;       // [E, d] float64
  Tensor dev;         // [E, d] Σ sign(x − μ) (MAD) or Σ 2(x − μ) (variance): the backward's path through μ
};

ClusterStats cluster_statistics(const Tensor& x, const Clusters& clusters, int64_t E, ACStat stat) {
  const int64_t n = x.size(0), d = x.size(1);
  const bool mad = stat == ACStat::MAD;
  ClusterStats st{clusters, f64({E, d}, x.device()), f64({E, d}, x.device()), f64({E, d}, x.device())};
  if (x.device().is_cuda()) {
    MOEGRAD_CUDA(cuda_ac_cluster_statistics(x, clusters.order, clusters.offsets, mad, st.mu, st.s, st.dev));
    return st;
  }
  const int64_t *order = clusters.order.data<int64_t>(), *off = clusters.offsets.data<int64_t>();
  double *mu = st.mu.data<double>(), *s = st.s.data<double>(), *dev = st.dev.data<double>();
  dispatch_float(x.dtype(), "ac_cluster_weights", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    // each (cluster, feature) summed over its tokens in token order; features split between threads
    over_columns(n, d, [&](int64_t f0, int64_t f1) {
      for (int64_t e = 0; e < E; ++e) {
        const int64_t count = off[e + 1] - off[e];
        for (int64_t f = f0; f < f1; ++f) mu[e * d + f] = s[e * d + f] = dev[e * d + f] = 0;
        for (int64_t k = off[e]; k < off[e + 1]; ++k)
          for (int64_t f = f0; f < f1; ++f) mu[e * d + f] += xp[order[k] * d + f];
        for (int64_t f = f0; f < f1; ++f) mu[e * d + f] /= std::max<int64_t>(count, 1);
        for (int64_t k = off[e]; k < off[e + 1]; ++k)
          for (int64_t f = f0; f < f1; ++f) {
            const double r = xp[order[k] * d + f] - mu[e * d + f];
            s[e * d + f] += mad ? std::fabs(r) : r * r;
            dev[e * d + f] += mad ? (r > 0) - (r < 0) : 2 * r;
          }
        for (int64_t f = f0; f < f1; ++f) s[e * d + f] = count > 0 ? s[e * d + f] / count : 0.0;
      }
    });
  });
  return st;
}

// ---- 2. the weight table: A = 1 / (s + eps), the clip, the scaling ----

struct WeightTable {
  Tensor A;          // [E, d] float64
  Tensor threshold;  // [1] float64: clip · mean(A), +inf without clip
  Tensor q;          // [d] (per feature) or [1] (global) float64: the means W divides by
  Tensor W;          // [E, d] in x's dtype
};

// The clusters in the table: every one (official), or those of two tokens or more (neutral).
std::vector<char> table_rows(const int64_t* offsets, int64_t E, ACSmallClusters mode) {
  std::vector<char> in(E);
  for (int64_t e = 0; e < E; ++e) in[e] = mode == ACSmallClusters::Official || offsets[e + 1] - offsets[e] >= 2;
  return in;
}

WeightTable weight_table(const ClusterStats& st, const ACOptions& opt, DType dtype) {
  const int64_t E = st.s.size(0), d = st.s.size(1);
  const Device device = st.s.device();
  const bool per_feature = opt.scaling == ACScaling::PerFeature;
  WeightTable t{f64({E, d}, device), f64({1}, device), f64({per_feature ? d : 1}, device),
                Tensor::empty({E, d}, dtype, device)};
  if (device.is_cuda()) {
    MOEGRAD_CUDA(cuda_ac_weight_table(st.s, st.clusters.offsets, opt.eps, opt.clip, per_feature,
                                      opt.small_clusters == ACSmallClusters::Neutral, t.A, t.threshold, t.q, t.W));
    return t;
  }
  const std::vector<char> in = table_rows(st.clusters.offsets.data<int64_t>(), E, opt.small_clusters);
  const int64_t members = std::count(in.begin(), in.end(), 1);
  const double* s = st.s.data<double>();
  double *A = t.A.data<double>(), *q = t.q.data<double>();
  double mean_a = 0;
  for (int64_t j = 0; j < E * d; ++j) {
    A[j] = 1.0 / (s[j] + opt.eps);
    if (in[j / d]) mean_a += A[j];
  }
  mean_a /= static_cast<double>(members * d);
  const double threshold = opt.clip > 0 && members > 0 ? opt.clip * mean_a : INFINITY;
  t.threshold.data<double>()[0] = threshold;
  auto B = [&](int64_t j) { return std::min(A[j], threshold); };
  std::fill(q, q + t.q.numel(), 0.0);
  for (int64_t j = 0; j < E * d; ++j)
    if (in[j / d]) q[per_feature ? j % d : 0] += B(j);
  for (int64_t g = 0; g < t.q.numel(); ++g) q[g] = members > 0 ? q[g] / (per_feature ? members : members * d) : 1.0;
  dispatch_float(dtype, "ac_cluster_weights", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* W = t.W.data<T>();
    for (int64_t j = 0; j < E * d; ++j) W[j] = in[j / d] ? static_cast<T>(B(j) / q[per_feature ? j % d : 0]) : T(1);
  });
  return t;
}

// ---- 1b. the cluster statistics over every rank's tokens (ACOptions::ranks) ----

ClusterStats global_cluster_statistics(const Tensor& x, const Tensor& labels, int64_t E, ACStat stat,
                                       dist::Communicator& comm) {
  const int64_t n = x.size(0), d = x.size(1);
  const bool mad = stat == ACStat::MAD;
  const std::vector<double> xv = x.to_vector();
  const std::vector<int64_t> label = labels.to_indices();
  // round 1: per cluster, the count and the per-feature sums of this rank's tokens, summed over the ranks
  Tensor counts = Tensor::zeros({E}, DType::Float64), mu = Tensor::zeros({E, d}, DType::Float64);
  double *count = counts.data<double>(), *m = mu.data<double>();
  for (int64_t i = 0; i < n; ++i) {
    count[label[i]] += 1;
    for (int64_t f = 0; f < d; ++f) m[label[i] * d + f] += xv[i * d + f];
  }
  comm.all_reduce_sum({counts, mu});
  for (int64_t e = 0; e < E; ++e)
    for (int64_t f = 0; f < d; ++f) m[e * d + f] /= std::max(count[e], 1.0);
  // round 2: the spreads around the global means (and the backward's path through them)
  Tensor s = Tensor::zeros({E, d}, DType::Float64), dev = Tensor::zeros({E, d}, DType::Float64);
  double *sp = s.data<double>(), *dp = dev.data<double>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t f = 0; f < d; ++f) {
      const double r = xv[i * d + f] - m[label[i] * d + f];
      sp[label[i] * d + f] += mad ? std::fabs(r) : r * r;
      dp[label[i] * d + f] += mad ? (r > 0) - (r < 0) : 2 * r;
    }
  comm.all_reduce_sum({s, dev});
  std::vector<int64_t> offsets(E + 1, 0);
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t f = 0; f < d; ++f) sp[e * d + f] = count[e] > 0 ? sp[e * d + f] / count[e] : 0.0;
    offsets[e + 1] = offsets[e] + static_cast<int64_t>(count[e]);
  }
  const Device device = x.device();
  return {Clusters{Tensor(), Tensor::from_indices(offsets, {E + 1}).to(device)}, mu.to(device), s.to(device),
          dev.to(device)};
}

// ---- 3. the backward: dW -> dx through the scaling, the clip, A and s ----

Tensor cluster_weights_backward(const Tensor& x, const Tensor& labels, const ClusterStats& st, const WeightTable& t,
                                const ACOptions& opt, const Tensor& dW_in) {
  const int64_t n = x.size(0), d = x.size(1), E = t.A.size(0);
  const bool per_feature = opt.scaling == ACScaling::PerFeature, mad = opt.stat == ACStat::MAD;
  const Tensor dWt = contiguous(dW_in.to(x.dtype()));
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    MOEGRAD_CUDA(cuda_ac_cluster_weights_backward(x, labels, st.clusters.offsets, st.mu, st.dev, t.A, t.threshold,
                                                  t.q, mad, opt.clip, per_feature,
                                                  opt.small_clusters == ACSmallClusters::Neutral, dWt, dx));
    return dx;
  }
  const Tensor dW64 = dWt.to(DType::Float64);
  const double* dW = dW64.data<double>();
  const int64_t* off = st.clusters.offsets.data<int64_t>();
  const std::vector<char> in = table_rows(off, E, opt.small_clusters);
  const int64_t members = std::count(in.begin(), in.end(), 1);
  const double *A = t.A.data<double>(), *q = t.q.data<double>(), threshold = t.threshold.data<double>()[0];
  auto B = [&](int64_t j) { return std::min(A[j], threshold); };
  // through the scaling W = B / q (q the mean of `in_mean` entries of B)
  std::vector<double> dot(per_feature ? d : 1, 0.0);
  for (int64_t j = 0; j < E * d; ++j)
    if (in[j / d]) dot[per_feature ? j % d : 0] += dW[j] * B(j);
  const double in_mean = per_feature ? members : members * d;
  std::vector<double> dB(E * d, 0.0);
  for (int64_t j = 0; j < E * d; ++j) {
    const int64_t g = per_feature ? j % d : 0;
    if (in[j / d]) dB[j] = dW[j] / q[g] - dot[g] / (in_mean * q[g] * q[g]);
  }
  // through the clip B = min(A, clip · mean(A)); the threshold depends on every A in the table
  double dthreshold = 0;
  for (int64_t j = 0; j < E * d; ++j)
    if (in[j / d] && A[j] > threshold) dthreshold += dB[j];
  const double share = std::isfinite(threshold) ? opt.clip / static_cast<double>(members * d) : 0.0;
  // through A = 1 / (s + eps), then s = D / n_e into per-cluster coefficients
  std::vector<double> ds(E * d), dmu(E * d);
  for (int64_t j = 0; j < E * d; ++j) {
    const int64_t count = off[j / d + 1] - off[j / d];
    const double dA = in[j / d] ? (A[j] > threshold ? 0.0 : dB[j]) + share * dthreshold : 0.0;
    ds[j] = count > 0 ? -dA * A[j] * A[j] / count : 0.0;           // d(loss)/dD
    dmu[j] = count > 0 ? -ds[j] * st.dev.data<double>()[j] / count : 0.0;  // via μ, per token of e
  }
  const int64_t* c = labels.data<int64_t>();
  const double* mu = st.mu.data<double>();
  dispatch_float(x.dtype(), "ac_cluster_weights backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* g = dx.data<T>();
    parallel_for(n, grain_for(d), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        for (int64_t f = 0; f < d; ++f) {
          const int64_t j = c[i] * d + f;
          const double r = xp[i * d + f] - mu[j];
          const double local = mad ? (r > 0) - (r < 0) : 2 * r;
          g[i * d + f] = static_cast<T>(ds[j] * local + dmu[j]);
        }
    });
  });
  return dx;
}

// ---- the scale-gather kernels: out_i = x_i ⊙ Σ_j mix_ij W[idx_ij] ----

Tensor scale_gather(const Tensor& x, const Tensor& W, const Tensor& index, const Tensor& mix) {
  const int64_t n = index.size(0), m = index.size(1), d = W.size(1);
  Tensor out = Tensor::empty({n, d}, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    MOEGRAD_CUDA(cuda_ac_scale_gather(x, W, index, mix, out));
    return out;
  }
  const int64_t* idx = index.data<int64_t>();
  dispatch_float(x.dtype(), "ac_scale_gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *xp = x.data<T>(), *wp = W.data<T>(), *mp = mix.defined() ? mix.data<T>() : nullptr;
    T* o = out.data<T>();
    parallel_for(n, grain_for(d * m), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T* row = wp + idx[i * m] * d;
        const T s0 = mp ? mp[i * m] : T(1);
        for (int64_t f = 0; f < d; ++f) o[i * d + f] = s0 * row[f];
        for (int64_t j = 1; j < m; ++j) {
          row = wp + idx[i * m + j] * d;
          for (int64_t f = 0; f < d; ++f) o[i * d + f] += mp[i * m + j] * row[f];
        }
        for (int64_t f = 0; f < d; ++f) o[i * d + f] *= xp[i * d + f];
      }
    });
  });
  return out;
}

struct ScaleGatherGrads {
  Tensor dx, dW, dmix;  // each defined when asked for
};

// dx_i = dy_i ⊙ w_i, dmix_ij = <dy_i ⊙ x_i, W[idx_ij]>, and dW[e] summed over
// the entries of cluster e (`entries`) in entry order.
ScaleGatherGrads scale_gather_backward(const Tensor& dy, const Tensor& x, const Tensor& W, const Tensor& index,
                                       const Tensor& mix, const Clusters& entries, bool need_x, bool need_w) {
  const int64_t n = index.size(0), m = index.size(1), E = W.size(0), d = W.size(1);
  const Device device = x.device();
  ScaleGatherGrads g{need_x ? Tensor::empty(x.shape(), x.dtype(), device) : Tensor(),
                     need_w ? Tensor::empty(W.shape(), W.dtype(), device) : Tensor(),
                     mix.defined() ? Tensor::empty(mix.shape(), mix.dtype(), device) : Tensor()};
  if (device.is_cuda()) {
    MOEGRAD_CUDA(cuda_ac_scale_gather_backward(dy, x, W, index, mix, entries.order, entries.offsets, g.dx, g.dW,
                                               g.dmix));
    return g;
  }
  const int64_t* idx = index.data<int64_t>();
  dispatch_float(x.dtype(), "ac_scale_gather backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *gy = dy.data<T>(), *xp = x.data<T>(), *wp = W.data<T>(), *mp = mix.defined() ? mix.data<T>() : nullptr;
    parallel_for(n, grain_for(d * m), [&](int64_t b, int64_t e) {
      std::vector<T> w(d);
      for (int64_t i = b; i < e; ++i) {
        const T* gi = gy + i * d;
        const T* xi = xp + i * d;
        if (need_x) {
          std::fill(w.begin(), w.end(), T(0));
          for (int64_t j = 0; j < m; ++j) {
            const T* row = wp + idx[i * m + j] * d;
            const T s = mp ? mp[i * m + j] : T(1);
            for (int64_t f = 0; f < d; ++f) w[f] += s * row[f];
          }
          T* dxi = g.dx.data<T>() + i * d;
          for (int64_t f = 0; f < d; ++f) dxi[f] = gi[f] * w[f];
        }
        if (mp)
          for (int64_t j = 0; j < m; ++j) {
            const T* row = wp + idx[i * m + j] * d;
            T dot = 0;
            for (int64_t f = 0; f < d; ++f) dot += gi[f] * xi[f] * row[f];
            g.dmix.data<T>()[i * m + j] = dot;
          }
      }
    });
    if (need_w) {
      const int64_t *order = entries.order.data<int64_t>(), *off = entries.offsets.data<int64_t>();
      T* dwp = g.dW.data<T>();
      over_columns(n * m, d, [&](int64_t f0, int64_t f1) {
        for (int64_t c = 0; c < E; ++c)
          for (int64_t f = f0; f < f1; ++f) {
            T sum = 0;
            for (int64_t k = off[c]; k < off[c + 1]; ++k) {
              const int64_t p = order[k], i = p / m;
              sum += (mp ? mp[p] : T(1)) * gy[i * d + f] * xp[i * d + f];
            }
            dwp[c * d + f] = sum;
          }
      });
    }
  });
  return g;
}

}  // namespace

Tensor ac_cluster_weights(const Tensor& x_in, const Tensor& labels_in, int64_t E, const ACOptions& opt) {
  const char* op = "ac_cluster_weights";
  check_float(x_in, op);
  check_index(labels_in, x_in.device(), op, "labels");
  MG_CHECK(x_in.dim() == 2, op, ": x must be [tokens, features], got ", shape_str(x_in.shape()));
  MG_CHECK(labels_in.dim() == 1 && labels_in.size(0) == x_in.size(0), op, ": labels must be [", x_in.size(0),
           "], got ", shape_str(labels_in.shape()));
  MG_CHECK(E > 0, op, ": number of clusters must be positive, got ", E);
  MG_CHECK(opt.eps > 0 && std::isfinite(opt.eps), op, ": eps must be positive and finite, got ", opt.eps);
  MG_CHECK(x_in.size(0) > 0 && x_in.size(1) > 0, op, ": empty input ", shape_str(x_in.shape()));
  const Tensor x = contiguous(x_in).detach(), labels = contiguous(labels_in);
  const Clusters clusters = group_by_cluster(labels, E, op, "label", "of token");  // checks the labels
  // Over ranks the statistics (counts, μ, s and the backward's Σ sign or Σ 2(x − μ)) are every rank's,
  // and W shapes every rank's loss: the backward first sums dW over the ranks, then takes this rank's
  // tokens through the one-process formula.
  const dist::CommPtr ranks = opt.ranks && opt.ranks->world_size() > 1 ? opt.ranks : nullptr;
  const ClusterStats stats = ranks ? global_cluster_statistics(x, labels, E, opt.stat, *ranks)
                                   : cluster_statistics(x, clusters, E, opt.stat);
  WeightTable table = weight_table(stats, opt, x.dtype());
  // the backward keeps the table but not W itself: W -> its node -> W would be a cycle that outlives a graph
  // whose backward never runs
  const WeightTable saved{table.A, table.threshold, table.q, Tensor()};
  attach_backward(table.W, op, {x_in}, [x, labels, stats, saved, opt, ranks](const Tensor& dW) {
    Tensor dW_all = dW;
    if (ranks) {
      dW_all = clone(dW);
      ranks->all_reduce_sum({dW_all});
    }
    return std::vector<Tensor>{cluster_weights_backward(x, labels, stats, saved, opt, dW_all)};
  });
  return table.W;
}

Tensor ac_scale_gather(const Tensor& x_in, const Tensor& W_in, const Tensor& index_in, const Tensor& mix_in) {
  const char* op = "ac_scale_gather";
  check_float(x_in, op, "x");
  check_float(W_in, op, "weights");
  check_same_type(x_in, W_in, op);
  check_index(index_in, x_in.device(), op, "index");
  MG_CHECK(W_in.dim() == 2, op, ": weights must be [clusters, features], got ", shape_str(W_in.shape()));
  MG_CHECK(x_in.dim() == 2 && x_in.size(1) == W_in.size(1), op, ": x must be [n, ", W_in.size(1), "], got ",
           shape_str(x_in.shape()));
  MG_CHECK((index_in.dim() == 1 || index_in.dim() == 2) && index_in.size(0) == x_in.size(0), op,
           ": index must be [", x_in.size(0), "] or [", x_in.size(0), ", m], got ", shape_str(index_in.shape()));
  const Tensor index = contiguous(index_in.dim() == 1 ? unsqueeze(index_in, 1) : index_in);
  const int64_t n = index.size(0), m = index.size(1);
  MG_CHECK(m > 0, op, ": index must name at least one cluster per token, got ", shape_str(index.shape()));
  if (mix_in.defined()) {
    check_float(mix_in, op, "mix");
    check_same_type(x_in, mix_in, op);
    MG_CHECK(mix_in.shape() == index.shape(), op, ": mix must have the index's shape ", shape_str(index.shape()),
             ", got ", shape_str(mix_in.shape()));
  } else {
    MG_CHECK(m == 1, op, ": mixing over ", m, " clusters needs mix weights");
  }
  // the n·m entries grouped by cluster: checks the indices, and orders dW's sums
  const Clusters entries = group_by_cluster(reshape(index, {n * m}), W_in.size(0), op, "index", "at position");
  const Tensor x = contiguous(x_in).detach(), W = contiguous(W_in).detach();
  const Tensor mix = mix_in.defined() ? contiguous(mix_in).detach() : Tensor();
  Tensor out = scale_gather(x, W, index, mix);
  std::vector<Tensor> inputs{x_in, W_in};
  if (mix_in.defined()) inputs.push_back(mix_in);
  attach_backward(out, op, inputs, [x, W, index, mix, entries, need_x = x_in.requires_grad(),
                                    need_w = W_in.requires_grad()](const Tensor& dy) {
    ScaleGatherGrads g = scale_gather_backward(contiguous(dy.to(x.dtype())), x, W, index, mix, entries, need_x, need_w);
    std::vector<Tensor> grads{g.dx, g.dW};
    if (mix.defined()) grads.push_back(g.dmix);
    return grads;
  });
  return out;
}

namespace {

// Error unless prev are n tokens' assignments with at least mix_m choices (and their logits for mixing).
void check_assignments(const Tensor& x, const Assignments& prev, int64_t mix_m, const char* caller) {
  MG_CHECK(prev.defined(), caller, ": AC needs the previous MoE layer's assignments (the first MoE layer of a model ",
           "must use the top-k router)");
  MG_CHECK(x.defined() && x.dim() == 2 && prev.indices.dim() == 2 && prev.indices.size(0) == x.size(0) &&
               prev.indices.size(1) > 0,
           caller, ": previous assignments ", shape_str(prev.indices.shape()), " do not match tokens ",
           x.defined() ? shape_str(x.shape()) : "undefined");
  MG_CHECK(mix_m >= 1 && mix_m <= prev.indices.size(1), caller, ": mixing over the top ", mix_m,
           " needs at least that many previous choices, got ", prev.indices.size(1));
  MG_CHECK(mix_m == 1 || (prev.logits.defined() && prev.logits.shape() == prev.indices.shape()), caller,
           ": mixing over the previous top ", mix_m, " needs their logits of shape ", shape_str(prev.indices.shape()),
           ", got ", prev.logits.defined() ? shape_str(prev.logits.shape()) : "undefined");
  MG_CHECK(mix_m == 1 || prev.logits.dtype() == x.dtype(), caller, ": previous logits are ",
           dtype_name(prev.logits.dtype()), " but tokens are ", dtype_name(x.dtype()));
  MG_CHECK(prev.indices.device() == x.device() && (mix_m == 1 || prev.logits.device() == x.device()), caller,
           ": previous assignments are on ", prev.indices.device().str(), " but tokens are on ", x.device().str());
}

// W from the clusters of x's labels (column 0 of prev.indices).
Tensor token_cluster_weights(const Tensor& x, const Assignments& prev, int64_t experts, const ACOptions& options,
                             bool differentiable, const char* caller) {
  const Tensor labels = contiguous(squeeze(narrow(prev.indices, 1, 0, 1), 1));
  int64_t rows = experts;
  if (options.rows == ACTableRows::LargestIndex) {
    MG_CHECK(!options.ranks || options.ranks->world_size() == 1, caller, ": AC statistics over several ranks need ",
             "a table row per expert, not up to the largest previous index (which differs between ranks)");
    const std::vector<int64_t> all = prev.indices.to_indices();
    const int64_t largest = all.empty() ? 0 : *std::max_element(all.begin(), all.end());
    MG_CHECK(largest < experts, caller, ": previous expert index ", largest, " outside [0, ", experts, ")");
    rows = std::max<int64_t>(largest, 0) + 1;  // a negative label is named by ac_cluster_weights
  }
  if (differentiable) return ac_cluster_weights(x, labels, rows, options);
  NoGradGuard no_grad;
  return ac_cluster_weights(x.detach(), labels, rows, options);
}

}  // namespace

ACScale ac_token_scale(const Tensor& x, const Assignments& prev, int64_t experts, const ACOptions& options,
                       int64_t mix_m, bool differentiable, const char* caller, const ACStatistics* statistics) {
  check_assignments(x, prev, mix_m, caller);
  ACScale out;
  if (statistics) {
    check_assignments(statistics->x, statistics->previous, 1, caller);
    MG_CHECK(statistics->x.size(1) == x.size(1) && statistics->x.dtype() == x.dtype(), caller,
             ": the statistics' tokens ", shape_str(statistics->x.shape()), " do not match the tokens ",
             shape_str(x.shape()));
    out.W = token_cluster_weights(statistics->x, statistics->previous, experts, options, differentiable, caller);
  } else {
    out.W = token_cluster_weights(x, prev, experts, options, differentiable, caller);
  }
  out.index = contiguous(narrow(prev.indices, 1, 0, mix_m));
  if (mix_m > 1) {
    Tensor mix_logits = narrow(prev.logits, 1, 0, mix_m);
    if (!differentiable) mix_logits = mix_logits.detach();
    out.mix = softmax(mix_logits, -1);
  }
  out.scaled = ac_scale_gather(x, out.W, out.index, out.mix);
  return out;
}

}  // namespace moegrad
