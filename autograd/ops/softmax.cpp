// softmax and log_softmax along any dimension. The kernels work on rows: the
// chosen dim is moved last (permute + contiguous) so each row is contiguous,
// rows run in parallel, and the result is moved back. Both subtract the row
// max before exp, so large inputs do not overflow. The forward saves the
// output y (in row layout); the backward is row-wise too:
//   softmax:      dx = y * (dy - sum(dy * y))
//   log_softmax:  dx = dy - exp(y) * sum(dy)
// CUDA tensors take the same row layout; each row is then one block of the
// kernels in cuda/softmax.cu (the same arithmetic, fixed-order sums).
#include <cmath>

#include "autograd/ops/util.h"
#include "cuda/softmax.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

// How x is seen as [rows, n]: `perm` moves the softmax dim last, `inverse`
// moves it back.
struct RowLayout {
  std::vector<int64_t> perm, inverse;
  int64_t rows = 1, n = 1;
};

RowLayout row_layout(const Tensor& x, int64_t d) {
  RowLayout l;
  const int64_t nd = x.dim();
  for (int64_t i = 0; i < nd; ++i)
    if (i != d) l.perm.push_back(i), l.rows *= x.shape()[i];
  if (nd > 0) l.perm.push_back(d), l.n = x.shape()[d];  // a 0-d tensor is one row of one
  l.inverse.resize(nd);
  for (int64_t i = 0; i < nd; ++i) l.inverse[l.perm[i]] = i;
  return l;
}

// t in row layout (contiguous, detached) and back in t's original layout.
Tensor to_rows(const Tensor& t, const RowLayout& l) { return contiguous(permute(t.detach(), l.perm)).detach(); }
Tensor from_rows(const Tensor& t, const RowLayout& l) { return contiguous(permute(t, l.inverse)).detach(); }

// Calls f(r) for every row r of length n, in parallel over rows.
template <typename F>
void for_each_row(int64_t rows, int64_t n, F f) {
  if (n == 0) return;
  parallel_for(rows, grain_for(n), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) f(r);
  });
}

template <typename T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t n, bool log) {
  for_each_row(rows, n, [&](int64_t r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T m = xr[0];
    for (int64_t i = 1; i < n; ++i) m = std::max(m, xr[i]);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      T e = std::exp(xr[i] - m);
      s += e;
      if (!log) yr[i] = e;
    }
    if (log) {
      const T log_s = static_cast<T>(std::log(s));
      for (int64_t i = 0; i < n; ++i) yr[i] = xr[i] - m - log_s;
    } else {
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t i = 0; i < n; ++i) yr[i] *= inv;
    }
  });
}

template <typename T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t n, bool log) {
  for_each_row(rows, n, [&](int64_t r) {
    const T* yr = y + r * n;
    const T* dyr = dy + r * n;
    T* dxr = dx + r * n;
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += log ? dyr[i] : dyr[i] * yr[i];
    const T st = static_cast<T>(s);
    for (int64_t i = 0; i < n; ++i) dxr[i] = log ? dyr[i] - std::exp(yr[i]) * st : yr[i] * (dyr[i] - st);
  });
}

// yr = softmax (log_softmax) of the rows of xr, on xr's device.
void forward_rows(const Tensor& xr, const Tensor& yr, const RowLayout& l, bool log, const char* op) {
  if (xr.device().is_cuda()) return MOEGRAD_CUDA(cuda_softmax_forward(xr, yr, l.rows, l.n, log));
  dispatch_float(xr.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_forward(xr.data<T>(), yr.data<T>(), l.rows, l.n, log);
  });
}

// dxr from the forward's yr and the upstream dyr, all in row layout.
void backward_rows(const Tensor& yr, const Tensor& dyr, const Tensor& dxr, const RowLayout& l, bool log,
                   const char* op) {
  if (yr.device().is_cuda()) return MOEGRAD_CUDA(cuda_softmax_backward(yr, dyr, dxr, l.rows, l.n, log));
  dispatch_float(yr.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_backward(yr.data<T>(), dyr.data<T>(), dxr.data<T>(), l.rows, l.n, log);
  });
}

Tensor softmax_op(const Tensor& x, int64_t dim, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_float(x, op);
  const RowLayout l = row_layout(x, wrap_dim(dim, x.dim(), op));
  Tensor xr = to_rows(x, l);
  Tensor yr = Tensor::empty(xr.shape(), x.dtype(), x.device());
  forward_rows(xr, yr, l, log, op);
  Tensor y = from_rows(yr, l);
  attach_backward(y, op, {x}, [yr, l, log, op](const Tensor& dout) {
    Tensor dyr = to_rows(dout, l);
    Tensor dxr = Tensor::empty(yr.shape(), yr.dtype(), yr.device());
    backward_rows(yr, dyr, dxr, l, log, op);
    return std::vector<Tensor>{from_rows(dxr, l)};
  });
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op(x, dim, true); }

}  // namespace moegrad
