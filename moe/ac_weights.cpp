// AC feature weights: forward passes and hand-written backward (see ac_weights.h).
#include "moe/ac_weights.h"

#include <cmath>

#include "autograd/ops/util.h"
#include "cuda/ac_weights.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

// Error naming the first key outside [0, E): "<op>: <what> <key> <where> <position> outside [0, E)".
void check_range(const std::vector<int64_t>& keys, int64_t E, const char* op, const char* what, const char* where) {
  for (size_t i = 0; i < keys.size(); ++i)
    MG_CHECK(keys[i] >= 0 && keys[i] < E, op, ": ", what, " ", keys[i], " ", where, " ", i, " outside [0, ", E, ")");
}

#ifdef MOEGRAD_WITH_CUDA
// keys (int64 [k] on a CUDA device) grouped by cluster. The counting sort
// checks the range on the device; only when it finds a key outside [0, E) are
// the keys copied to the host, to name the first one as the CPU does.
CudaCountingSort sort_by_cluster(const Tensor& keys, int64_t E, const char* op, const char* what, const char* where) {
  if (E == 0) {  // no clusters: nothing to sort, and any key is out of range
    check_range(keys.to_indices(), E, op, what, where);
    return {Tensor::empty({0}, DType::Int64, keys.device()), Tensor::zeros({1}, DType::Int64, keys.device())};
  }
  try {
    return cuda_counting_sort(keys, E, op);
  } catch (const Error&) {
    check_range(keys.to_indices(), E, op, what, where);
    throw;
  }
}
#endif

// Calls f(f0, f1) on column ranges of [0, d) in parallel when n·d is large.
template <typename F>
void over_columns(int64_t n, int64_t d, F f) {
  parallel_for(d, grain_for(n), f);
}

// Everything the forward computes that the backward needs.
template <typename T>
struct ACState {
  std::vector<int64_t> count;  // [E]
  std::vector<double> mu;      // [E, d]
  std::vector<double> dev;     // [E, d] Σ sign(x − μ) (MAD) or Σ 2(x − μ) (variance), for dμ
  std::vector<double> a, b;    // [E, d] A and clipped B
  std::vector<double> q;       // [d] per-feature or [1] global mean of B
  std::vector<char> clipped;   // [E, d]
  double threshold = 0;
};

#ifdef MOEGRAD_WITH_CUDA
// ac_cluster_weights on a CUDA device (inputs validated but the label range):
// the tokens sorted by cluster, then the kernels of cuda/ac_weights.cu.
Tensor ac_cluster_weights_cuda(const Tensor& x_in, const Tensor& labels_in, int64_t E, const ACOptions& opt) {
  const char* op = "ac_cluster_weights";
  const CudaCountingSort clusters = sort_by_cluster(labels_in, E, op, "label", "of token");
  Tensor x = contiguous(x_in).detach(), labels = contiguous(labels_in);
  const bool mad = opt.stat == ACStat::MAD, per_feature = opt.scaling == ACScaling::PerFeature;
  Tensor W = Tensor::empty({E, x.size(1)}, x.dtype(), x.device());
  const CudaACStats stats = cuda_ac_cluster_weights(x, clusters, E, mad, opt.eps, opt.clip, per_feature, W);
  attach_backward(W, op, {x_in}, [x, labels, clusters, stats, mad, opt, per_feature](const Tensor& dW_in) {
    Tensor dW = contiguous(dW_in.to(x.dtype()));
    Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
    cuda_ac_cluster_weights_backward(x, labels, clusters, stats, mad, opt.clip, per_feature, dW, dx);
    return std::vector<Tensor>{dx};
  });
  return W;
}

// ac_scale_gather on a CUDA device (inputs validated but the index range; index [n, m]).
Tensor ac_scale_gather_cuda(const Tensor& x_in, const Tensor& W_in, const Tensor& index_in, const Tensor& mix_in) {
  const char* op = "ac_scale_gather";
  Tensor index = contiguous(index_in);
  const int64_t n = index.size(0), m = index.size(1);
  // the n·m entries grouped by cluster: checks the indices, and orders dW's sums when W needs a gradient
  CudaCountingSort entries = sort_by_cluster(reshape(index, {n * m}), W_in.size(0), op, "index", "at position");
  const bool need_x = x_in.requires_grad(), need_w = W_in.requires_grad();
  if (!need_w) entries = CudaCountingSort();
  Tensor x = contiguous(x_in).detach(), W = contiguous(W_in).detach();
  Tensor mix = mix_in.defined() ? contiguous(mix_in).detach() : Tensor();
  Tensor out = Tensor::empty({n, W.size(1)}, x.dtype(), x.device());
  cuda_ac_scale_gather(x, W, index, mix, out);
  std::vector<Tensor> inputs{x_in, W_in};
  if (mix_in.defined()) inputs.push_back(mix_in);
  attach_backward(out, op, inputs, [x, W, index, mix, entries, need_x, need_w](const Tensor& dy_in) {
    Tensor dy = contiguous(dy_in.to(x.dtype()));
    const Device dev = x.device();
    Tensor dx = need_x ? Tensor::empty(x.shape(), x.dtype(), dev) : Tensor();
    Tensor dW = need_w ? Tensor::empty(W.shape(), W.dtype(), dev) : Tensor();
    Tensor dmix = mix.defined() ? Tensor::empty(mix.shape(), mix.dtype(), dev) : Tensor();
    cuda_ac_scale_gather_backward(dy, x, W, index, mix, entries, dx, dW, dmix);
    std::vector<Tensor> grads{dx, dW};
    if (mix.defined()) grads.push_back(dmix);
    return grads;
  });
  return out;
}
#endif

}  // namespace

Tensor ac_cluster_weights(const Tensor& x_in, const Tensor& labels, int64_t E, const ACOptions& opt) {
  check_float(x_in, "ac_cluster_weights");
  check_index(labels, x_in.device(), "ac_cluster_weights", "labels");
  MG_CHECK(x_in.dim() == 2, "ac_cluster_weights: x must be [tokens, features], got ", shape_str(x_in.shape()));
  MG_CHECK(labels.dim() == 1 && labels.size(0) == x_in.size(0), "ac_cluster_weights: labels must be [",
           x_in.size(0), "], got ", shape_str(labels.shape()));
  MG_CHECK(E > 0, "ac_cluster_weights: number of clusters must be positive, got ", E);
  MG_CHECK(opt.eps > 0, "ac_cluster_weights: eps must be positive, got ", opt.eps);
  MG_CHECK(x_in.size(0) > 0 && x_in.size(1) > 0, "ac_cluster_weights: empty input ", shape_str(x_in.shape()));
#ifdef MOEGRAD_WITH_CUDA
  if (x_in.device().is_cuda()) return ac_cluster_weights_cuda(x_in, labels, E, opt);
#endif
  const std::vector<int64_t> c = labels.to_indices();
  check_range(c, E, "ac_cluster_weights", "label", "of token");
  Tensor x = contiguous(x_in).detach();
  const int64_t n = x.size(0), d = x.size(1);
  const bool per_feature = opt.scaling == ACScaling::PerFeature;
  const bool mad = opt.stat == ACStat::MAD;

  auto state = std::make_shared<ACState<double>>();
  ACState<double>& s = *state;
  Tensor W = Tensor::empty({E, d}, x.dtype());
  dispatch_float(x.dtype(), "ac_cluster_weights", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    s.count.assign(E, 0);
    for (int64_t i = 0; i < n; ++i) s.count[c[i]]++;
    // pass 1: per-cluster means
    s.mu.assign(E * d, 0.0);
    over_columns(n, d, [&](int64_t f0, int64_t f1) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t f = f0; f < f1; ++f) s.mu[c[i] * d + f] += xp[i * d + f];
      for (int64_t e = 0; e < E; ++e)
        for (int64_t f = f0; f < f1; ++f) s.mu[e * d + f] /= std::max<int64_t>(s.count[e], 1);
    });
    // pass 2: per-cluster spread, and Σ of the deviation's derivative for dμ
    std::vector<double> spread(E * d, 0.0);
    s.dev.assign(E * d, 0.0);
    over_columns(n, d, [&](int64_t f0, int64_t f1) {
      for (int64_t i = 0; i < n; ++i)
        for (int64_t f = f0; f < f1; ++f) {
          const int64_t ef = c[i] * d + f;
          const double r = xp[i * d + f] - s.mu[ef];
          spread[ef] += mad ? std::fabs(r) : r * r;
          s.dev[ef] += mad ? (r > 0) - (r < 0) : 2 * r;
        }
    });
    // A, clip, scaling over the E×d table
    s.a.resize(E * d);
    double mean_a = 0;
    for (int64_t e = 0; e < E; ++e)
      for (int64_t f = 0; f < d; ++f) {
        const double sd = s.count[e] > 0 ? spread[e * d + f] / s.count[e] : 0.0;
        s.a[e * d + f] = 1.0 / (sd + opt.eps);
        mean_a += s.a[e * d + f];
      }
    mean_a /= static_cast<double>(E * d);
    s.threshold = opt.clip > 0 ? opt.clip * mean_a : INFINITY;
    s.b.resize(E * d);
    s.clipped.resize(E * d);
    for (int64_t j = 0; j < E * d; ++j) {
      s.clipped[j] = s.a[j] > s.threshold;
      s.b[j] = s.clipped[j] ? s.threshold : s.a[j];
    }
    s.q.assign(per_feature ? d : 1, 0.0);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t f = 0; f < d; ++f) s.q[per_feature ? f : 0] += s.b[e * d + f];
    for (double& v : s.q) v /= per_feature ? E : E * d;
    T* w = W.data<T>();
    for (int64_t e = 0; e < E; ++e)
      for (int64_t f = 0; f < d; ++f) w[e * d + f] = static_cast<T>(s.b[e * d + f] / s.q[per_feature ? f : 0]);
  });

  attach_backward(W, "ac_cluster_weights", {x_in}, [state, x, c, E, opt](const Tensor& dW_in) {
    const ACState<double>& s = *state;
    Tensor dWc = contiguous(dW_in).to(DType::Float64);
    const double* dW = dWc.data<double>();
    const int64_t n = x.size(0), d = x.size(1);
    const bool per_feature = opt.scaling == ACScaling::PerFeature;
    // through the scaling W = B / q
    std::vector<double> dot(per_feature ? d : 1, 0.0);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t f = 0; f < d; ++f) dot[per_feature ? f : 0] += dW[e * d + f] * s.b[e * d + f];
    const double members = per_feature ? E : E * d;
    std::vector<double> dB(E * d);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t f = 0; f < d; ++f) {
        const int64_t g = per_feature ? f : 0;
        dB[e * d + f] = dW[e * d + f] / s.q[g] - dot[g] / (members * s.q[g] * s.q[g]);
      }
    // through the clip B = min(A, clip · mean(A)); the threshold depends on every A
    double dthreshold = 0;
    for (int64_t j = 0; j < E * d; ++j)
      if (s.clipped[j]) dthreshold += dB[j];
    const double share = std::isfinite(s.threshold) ? opt.clip / static_cast<double>(E * d) : 0.0;
    // through A = 1 / (s + eps), then the spread s = D / n_e into per-cluster coefficients
    std::vector<double> ds(E * d), dmu(E * d);
    for (int64_t e = 0; e < E; ++e)
      for (int64_t f = 0; f < d; ++f) {
        const int64_t j = e * d + f;
        const double dA = (s.clipped[j] ? 0.0 : dB[j]) + share * dthreshold;
        ds[j] = s.count[e] > 0 ? -dA * s.a[j] * s.a[j] / s.count[e] : 0.0;  // d(loss)/dD
        dmu[j] = s.count[e] > 0 ? -ds[j] * s.dev[j] / s.count[e] : 0.0;     // via μ, per token of e
      }
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    const bool mad = opt.stat == ACStat::MAD;
    dispatch_float(x.dtype(), "ac_cluster_weights backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T* xp = x.data<T>();
      T* g = dx.data<T>();
      parallel_for(n, grain_for(d), [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          for (int64_t f = 0; f < d; ++f) {
            const int64_t j = c[i] * d + f;
            const double r = xp[i * d + f] - s.mu[j];
            const double local = mad ? (r > 0) - (r < 0) : 2 * r;
            g[i * d + f] = static_cast<T>(ds[j] * local + dmu[j]);
          }
      });
    });
    return std::vector<Tensor>{dx};
  });
  return W;
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
  Tensor index = index_in.dim() == 1 ? unsqueeze(index_in, 1) : index_in;
  const int64_t n = index.size(0), m = index.size(1), E = W_in.size(0), d = W_in.size(1);
  MG_CHECK(m > 0, op, ": index must name at least one cluster per token, got ", shape_str(index.shape()));
  if (mix_in.defined()) {
    check_float(mix_in, op, "mix");
    check_same_type(x_in, mix_in, op);
    MG_CHECK(mix_in.shape() == index.shape(), op, ": mix must have the index's shape ", shape_str(index.shape()),
             ", got ", shape_str(mix_in.shape()));
  } else {
    MG_CHECK(m == 1, op, ": mixing over ", m, " clusters needs mix weights");
  }
#ifdef MOEGRAD_WITH_CUDA
  if (x_in.device().is_cuda()) return ac_scale_gather_cuda(x_in, W_in, index, mix_in);
#endif
  const std::vector<int64_t> idx = index.to_indices();
  check_range(idx, E, op, "index", "at position");
  Tensor x = contiguous(x_in).detach(), W = contiguous(W_in).detach();
  Tensor mix = mix_in.defined() ? contiguous(mix_in).detach() : Tensor();
  Tensor out = Tensor::empty({n, d}, x.dtype());
  dispatch_float(x.dtype(), op, [&](auto tag) {
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
  std::vector<Tensor> inputs{x_in, W_in};
  if (mix_in.defined()) inputs.push_back(mix_in);
  attach_backward(out, op, inputs, [x, W, mix, idx, n, m, need_x = x_in.requires_grad(),
                                    need_w = W_in.requires_grad()](const Tensor& dy_in) {
    Tensor dy = contiguous(dy_in);
    const int64_t d = W.size(1);
    Tensor dx = need_x ? Tensor::empty(x.shape(), x.dtype()) : Tensor();
    Tensor dW = need_w ? Tensor::zeros(W.shape(), W.dtype()) : Tensor();
    Tensor dmix = mix.defined() ? Tensor::empty(mix.shape(), mix.dtype()) : Tensor();
    dispatch_float(x.dtype(), "ac_scale_gather backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T *g = dy.data<T>(), *xp = x.data<T>(), *wp = W.data<T>(), *mp = mix.defined() ? mix.data<T>() : nullptr;
      // dx_i = dy_i ⊙ w_i and dmix_ij = <dy_i ⊙ x_i, W[idx_ij]>, per token
      parallel_for(n, grain_for(d * m), [&](int64_t b, int64_t e) {
        std::vector<T> w(d);
        for (int64_t i = b; i < e; ++i) {
          const T* gi = g + i * d;
          const T* xi = xp + i * d;
          if (need_x) {
            std::fill(w.begin(), w.end(), T(0));
            for (int64_t j = 0; j < m; ++j) {
              const T* row = wp + idx[i * m + j] * d;
              const T s = mp ? mp[i * m + j] : T(1);
              for (int64_t f = 0; f < d; ++f) w[f] += s * row[f];
            }
            T* dxi = dx.data<T>() + i * d;
            for (int64_t f = 0; f < d; ++f) dxi[f] = gi[f] * w[f];
          }
          if (mp)
            for (int64_t j = 0; j < m; ++j) {
              const T* row = wp + idx[i * m + j] * d;
              T dot = 0;
              for (int64_t f = 0; f < d; ++f) dot += gi[f] * xi[f] * row[f];
              dmix.data<T>()[i * m + j] = dot;
            }
        }
      });
      // dW by columns: each column summed by one thread in token order
      if (need_w) {
        T* dwp = dW.data<T>();
        parallel_for(d, grain_for(n * m), [&](int64_t f0, int64_t f1) {
          for (int64_t i = 0; i < n; ++i)
            for (int64_t j = 0; j < m; ++j) {
              const T s = mp ? mp[i * m + j] : T(1);
              T* row = dwp + idx[i * m + j] * d;
              for (int64_t f = f0; f < f1; ++f) row[f] += s * g[i * d + f] * xp[i * d + f];
            }
        });
      }
    });
    std::vector<Tensor> grads{dx, dW};
    if (mix.defined()) grads.push_back(dmix);
    return grads;
  });
  return out;
}

}  // namespace moegrad
