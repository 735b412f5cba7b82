// Multi-head self-attention (see attention.h). masked_softmax is one fused
// row-wise kernel: row t of a [T, S] block keeps its first t + (S - T) + 1
// entries under a causal mask, so masked entries are skipped rather than set
// to -inf and exponentiated. Its backward is row-wise as well:
//   dx = y * (dy - Σ dy*y) over the kept entries, 0 at masked entries.
// elliptical_metric is a detached reduction over tokens; the attention module
// itself is a composition of differentiable ops. CUDA tensors go to the
// kernels of cuda/attention.cu (same plans, deterministic: fixed-order block
// reductions, no atomics) and, for fused attention, cuda/flash_attention.cu.
#include "nn/attention.h"

#include <algorithm>
#include <cmath>

#include "autograd/ops/util.h"
#include "cuda/attention.h"
#include "tensor/parallel.h"
#include "tensor/random.h"

namespace moegrad {

namespace {

// Number of kept (unmasked) entries at the start of row t of a [nt, ns] block.
int64_t kept(int64_t t, int64_t nt, int64_t ns, bool causal) { return causal ? std::min(ns, t + ns - nt + 1) : ns; }

// Calls f(r, t) for every row r of length ns (t = r's query index), in
// parallel over rows.
template <typename F>
void for_each_row(int64_t rows, int64_t nt, int64_t ns, F f) {
  if (ns == 0) return;
  parallel_for(rows, grain_for(ns), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) f(r, r % nt);
  });
}

template <typename T>
void masked_softmax_forward(const T* x, T* y, int64_t rows, int64_t nt, int64_t ns, bool causal) {
  for_each_row(rows, nt, ns, [&](int64_t r, int64_t t) {
    const T* xr = x + r * ns;
    T* yr = y + r * ns;
    const int64_t n = kept(t, nt, ns, causal);
    T m = xr[0];
    for (int64_t i = 1; i < n; ++i) m = std::max(m, xr[i]);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      yr[i] = std::exp(xr[i] - m);
      s += yr[i];
    }
    const T inv = static_cast<T>(1.0 / s);
    for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
    for (int64_t i = n; i < ns; ++i) yr[i] = 0;
  });
}

template <typename T>
void masked_softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t nt, int64_t ns, bool causal) {
  for_each_row(rows, nt, ns, [&](int64_t r, int64_t t) {
    const T* yr = y + r * ns;
    const T* dyr = dy + r * ns;
    T* dxr = dx + r * ns;
    const int64_t n = kept(t, nt, ns, causal);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += dyr[i] * yr[i];
    const T st = static_cast<T>(s);
    for (int64_t i = 0; i < n; ++i) dxr[i] = yr[i] * (dyr[i] - st);
    for (int64_t i = n; i < ns; ++i) dxr[i] = 0;
  });
}

// The kernels above on contiguous x, y (dy, dx) of either device.
void masked_softmax_rows(const Tensor& x, const Tensor& y, int64_t rows, int64_t nt, int64_t ns, bool causal) {
  if (x.device().is_cuda()) return MOEGRAD_CUDA(cuda_masked_softmax(x, y, rows, nt, ns, causal));
  dispatch_float(x.dtype(), "masked_softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    masked_softmax_forward(x.data<T>(), y.data<T>(), rows, nt, ns, causal);
  });
}

void masked_softmax_rows_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t nt,
                                  int64_t ns, bool causal) {
  if (y.device().is_cuda()) return MOEGRAD_CUDA(cuda_masked_softmax_backward(y, dy, dx, rows, nt, ns, causal));
  dispatch_float(y.dtype(), "masked_softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    masked_softmax_backward(y.data<T>(), dy.data<T>(), dx.data<T>(), rows, nt, ns, causal);
  });
}

}  // namespace

Tensor masked_softmax(const Tensor& scores, bool causal) {
  const char* op = "masked_softmax";
  check_float(scores, op, "scores");
  MG_CHECK(scores.dim() >= 2, op, ": expected scores [..., T, S], got ", shape_str(scores.shape()));
  const int64_t nt = scores.size(-2), ns = scores.size(-1);
  MG_CHECK(!causal || ns >= nt, op, ": a causal mask needs S >= T (else a row is fully masked), got scores ",
           shape_str(scores.shape()));
  const int64_t rows = scores.numel() / std::max<int64_t>(ns, 1);
  Tensor x = contiguous(scores.detach());
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  masked_softmax_rows(x, y, rows, nt, ns, causal);
  Tensor yd = y.detach();
  attach_backward(y, op, {scores}, [yd, rows, nt, ns, causal](const Tensor& dout) {
    Tensor dy = contiguous(dout);
    Tensor dx = Tensor::empty(yd.shape(), yd.dtype(), yd.device());
    masked_softmax_rows_backward(yd, dy, dx, rows, nt, ns, causal);
    return std::vector<Tensor>{dx};
  });
  return y;
}

Tensor elliptical_metric(const Tensor& v, const Tensor& v_prev, bool causal) {
  const char* op = "elliptical_metric";
  check_float(v, op, "v");
  check_float(v_prev, op, "v_prev");
  check_same_type(v, v_prev, op);
  MG_CHECK(v.dim() == 4 && v.size(2) >= 1, op, ": expected v [B, H, T, Dh] with T >= 1, got ", shape_str(v.shape()));
  MG_CHECK(v_prev.shape() == v.shape(), op, ": expected v_prev ", shape_str(v.shape()), " like v, got ",
           shape_str(v_prev.shape()));
  const int64_t nb = v.size(0) * v.size(1), nt = v.size(2), nd = v.size(3);
  Tensor a = contiguous(v.detach()), b = contiguous(v_prev.detach());
  const int64_t rows_out = causal ? nt : 1;
  Tensor m = Tensor::empty({v.size(0), v.size(1), rows_out, nd}, v.dtype(), v.device());
  if (v.device().is_cuda()) {
    MOEGRAD_CUDA(cuda_elliptical_metric(a, b, m, nb, nt, nd, causal));
    return m;
  }
  dispatch_float(v.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *ap = a.data<T>(), *bp = b.data<T>();
    T* mp = m.data<T>();
    // Per (sample, head): running sums over tokens of |v - v_prev|; the
    // mean's 1/count cancels in the division by the max. Causal: one output
    // row per prefix; otherwise one row after the last token.
    parallel_for(nb, grain_for(nt * nd), [&](int64_t s, int64_t e) {
      std::vector<double> acc(nd);
      auto emit = [&](T* out) {
        double mx = 0;
        for (double x : acc) mx = std::max(mx, x);
        for (int64_t d = 0; d < nd; ++d) out[d] = static_cast<T>(mx > 0 ? acc[d] / mx : 1.0);
      };
      for (int64_t r = s; r < e; ++r) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t t = 0; t < nt; ++t) {
          for (int64_t d = 0; d < nd; ++d) acc[d] += std::abs(ap[(r * nt + t) * nd + d] - bp[(r * nt + t) * nd + d]);
          if (causal) emit(mp + (r * nt + t) * nd);
        }
        if (!causal) emit(mp + r * nd);
      }
    });
  });
  return m;
}

MultiHeadAttention::MultiHeadAttention(int64_t dim_, int64_t heads_, bool causal_, double p, const InitOptions& opt,
                                       bool bias)
    : dim(dim_), heads(heads_), causal(causal_) {
  MG_CHECK(dim > 0 && heads > 0 && dim % heads == 0,
           "MultiHeadAttention: dim must be a positive multiple of heads, got dim=", dim, " heads=", heads);
  qkv = register_module("qkv", std::make_shared<Linear>(dim, 3 * dim, bias, opt));
  proj = register_module("proj", std::make_shared<Linear>(dim, dim, bias, opt));
  Generator& g = opt.generator();
  drop = register_module("drop", std::make_shared<Dropout>(p, random_bits(g.seed(), g.take(1))));
}

AttentionOutput MultiHeadAttention::forward(const Tensor& x, const Tensor& prev_values) {
  const char* op = "MultiHeadAttention";
  MG_CHECK(x.defined() && x.dim() == 3 && x.size(2) == dim, op, ": expected x [B, T, ", dim, "], got ",
           x.defined() ? shape_str(x.shape()) : "undefined");
  MG_CHECK(x.dtype() == qkv->weight.dtype() && x.device() == qkv->weight.device(), op, ": expected x of dtype ",
           dtype_name(qkv->weight.dtype()), " on ", qkv->weight.device().str(), " like the parameters, got ",
           dtype_name(x.dtype()), " on ", x.device().str());
  const int64_t nb = x.size(0), nt = x.size(1), dh = dim / heads;
  // [B, T, 3*dim] -> [B, T, 3, H, Dh] -> [3, B, H, T, Dh]; q, k, v are views,
  // v always (it is handed on), q and k only on the paths that split heads.
  Tensor packed = qkv->forward(x);
  Tensor parts = permute(reshape(packed, {nb, nt, 3, heads, dh}), {2, 0, 3, 1, 4});
  auto part = [&](int64_t i) { return squeeze(narrow(parts, 0, i, 1), 0); };
  Tensor v = part(2);
  if (prev_values.defined())
    MG_CHECK(prev_values.shape() == v.shape() && prev_values.dtype() == v.dtype() &&
                 prev_values.device() == v.device(),
             op, ": expected prev_values ", shape_str(v.shape()), " of dtype ", dtype_name(v.dtype()), " on ",
             v.device().str(), ", got ", shape_str(prev_values.shape()), " of dtype ", dtype_name(prev_values.dtype()),
             " on ", prev_values.device().str());
  const bool metric = elliptical && prev_values.defined();
  // dropout on the probabilities, inside the fused kernels (drop's generator)
  const AttentionDropout dropout{training() ? drop->p : 0.0, &drop->gen};
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
  if (!metric) return {proj->forward(fused_self_attention(packed, heads, scale, causal, dropout)), v};
  // m: [B, H, 1, Dh] broadcast over tokens, or [B, H, T, Dh] per token when causal
  const Tensor q = mul(part(0), elliptical_metric(v, prev_values, causal));
  const Tensor heads_out = fused_attention(q, part(1), v, scale, causal, dropout);
  Tensor out = reshape(permute(heads_out, {0, 2, 1, 3}), {nb, nt, dim});  // heads side by side
  return {proj->forward(out), v};
}

AttentionOutput MultiHeadAttention::step(const Tensor& x, KVCache& cache, const Tensor& prev_values) {
  const char* op = "MultiHeadAttention::step";
  MG_CHECK(causal, op, ": incremental decoding needs a causal layer");
  MG_CHECK(x.defined() && x.dim() == 3 && x.size(1) == 1 && x.size(2) == dim, op, ": expected x [B, 1, ", dim,
           "], got ", x.defined() ? shape_str(x.shape()) : "undefined");
  const int64_t nb = x.size(0), dh = dim / heads;
  MG_CHECK(cache.length() == 0 || cache.k.size(0) == nb, op, ": the cache holds ", cache.length() ? cache.k.size(0) : 0,
           " samples, x ", nb);
  // everything checked before the cache changes: a refused step leaves it as it was
  if (elliptical && prev_values.defined()) {
    const Shape want{nb, heads, 1, dh};
    MG_CHECK(prev_values.shape() == want && prev_values.dtype() == x.dtype() && prev_values.device() == x.device(),
             op, ": expected prev_values ", shape_str(want), " of dtype ", dtype_name(x.dtype()), " on ",
             x.device().str(), ", got ", shape_str(prev_values.shape()), " ", dtype_name(prev_values.dtype()), " on ",
             prev_values.device().str());
  }
  if (elliptical) {
    const int64_t held = cache.prev_values.defined() ? cache.prev_values.size(2) : 0;
    MG_CHECK(held == (prev_values.defined() ? cache.length() : 0), op,
             ": prev_values must come with every step or none; the cache holds ", held, " of them for ",
             cache.length(), " tokens", prev_values.defined() ? "" : ", and this step has none");
  }
  const Tensor parts = permute(reshape(qkv->forward(x), {nb, 1, 3, heads, dh}), {2, 0, 3, 1, 4});
  auto part = [&](int64_t i) { return contiguous(squeeze(narrow(parts, 0, i, 1), 0)); };
  const Tensor q = part(0), k = part(1), v = part(2);
  auto append = [](Tensor& all, const Tensor& t) { all = all.defined() ? concat({all, t}, 2) : t; };
  append(cache.k, k);
  append(cache.v, v);
  Tensor query = q;
  if (elliptical && prev_values.defined()) {
    append(cache.prev_values, prev_values);
    query = mul(q, elliptical_metric(cache.v, cache.prev_values, false));  // over every token so far
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(dh));
  const Tensor heads_out = fused_attention(query, cache.k, cache.v, scale, true);
  return {proj->forward(reshape(permute(heads_out, {0, 2, 1, 3}), {nb, 1, dim})), v};
}

}  // namespace moegrad
