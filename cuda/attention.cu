// The kernels of cuda/attention.h.
// masked_softmax: one block per row (grid-stride over rows): the row's max
// with block_max, the exponentials' sum in double with block_sum, both
// fixed-order trees; masked entries are never read, their outputs are 0. The
// backward is the same shape of kernel over Σ dy ⊙ y.
// elliptical_metric: one thread per (row, feature) sums |v - v_prev| over the
// tokens in token order in double, as the CPU does (so the sums agree bit for
// bit), writing every prefix sum when causal; then one block per output row
// divides by the row's max (block_max, exact). No atomics anywhere, so every
// result is the same from run to run.
#include <cmath>

#include "cuda/attention.h"
#include "cuda/launch.cuh"

namespace moegrad {

namespace {

using cuda::kThreads;

using cuda::row_grid;
using cuda::row_threads;

// Kept (unmasked) entries at the start of row t of a [nt, ns] block.
__device__ int64_t kept_keys(int64_t t, int64_t nt, int64_t ns, bool causal) {
  return causal ? (t + ns - nt + 1 < ns ? t + ns - nt + 1 : ns) : ns;
}

template <typename T>
__global__ void masked_softmax_kernel(const T* x, T* y, int64_t rows, int64_t nt, int64_t ns, bool causal) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * ns;
    T* yr = y + r * ns;
    const int64_t n = kept_keys(r % nt, nt, ns, causal);
    T m = static_cast<T>(-INFINITY);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = cuda::MaxOp{}(m, xr[i]);
    m = cuda::block_max(m);
    double part = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T e = exp(xr[i] - m);
      yr[i] = e;
      part += e;
    }
    const T inv = static_cast<T>(1.0 / cuda::block_sum(part));
    // each thread rescales the entries it wrote itself: no barrier needed
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] *= inv;
    for (int64_t i = n + threadIdx.x; i < ns; i += blockDim.x) yr[i] = T(0);
  }
}

template <typename T>
__global__ void masked_softmax_backward_kernel(const T* y, const T* dy, T* dx, int64_t rows, int64_t nt, int64_t ns,
                                               bool causal) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* yr = y + r * ns;
    const T* dyr = dy + r * ns;
    T* dxr = dx + r * ns;
    const int64_t n = kept_keys(r % nt, nt, ns, causal);
    double part = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) part += dyr[i] * yr[i];
    const T s = static_cast<T>(cuda::block_sum(part));
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dxr[i] = yr[i] * (dyr[i] - s);
    for (int64_t i = n + threadIdx.x; i < ns; i += blockDim.x) dxr[i] = T(0);
  }
}

// acc[r, t, d] (causal) or acc[r, d] = Σ_{t' <= t or all} |a - b|[r, t', d].
template <typename T>
__global__ void metric_sums_kernel(const T* a, const T* b, double* acc, int64_t nb, int64_t nt, int64_t nd,
                                   bool causal) {
  MG_GRID_STRIDE(item, nb * nd) {
    const int64_t r = item / nd, d = item - r * nd;
    double s = 0;
    for (int64_t t = 0; t < nt; ++t) {
      const int64_t i = (r * nt + t) * nd + d;
      s += static_cast<double>(fabs(a[i] - b[i]));
      if (causal) acc[i] = s;
    }
    if (!causal) acc[r * nd + d] = s;
  }
}

// m[r, d] = acc[r, d] / max_d acc[r, d], or 1 when that max is 0.
template <typename T>
__global__ void metric_normalize_kernel(const double* acc, T* m, int64_t rows, int64_t nd) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const double* ar = acc + r * nd;
    double mx = 0;
    for (int64_t d = threadIdx.x; d < nd; d += blockDim.x) mx = mx < ar[d] ? ar[d] : mx;  // std::max(mx, x)
    mx = cuda::block_max(mx);
    for (int64_t d = threadIdx.x; d < nd; d += blockDim.x) m[r * nd + d] = static_cast<T>(mx > 0 ? ar[d] / mx : 1.0);
  }
}

void check_operands(const char* op, std::initializer_list<const Tensor*> ts) {
  const Tensor& first = **ts.begin();
  for (const Tensor* t : ts)
    MG_CHECK(t->device().is_cuda() && t->device() == first.device() && t->dtype() == first.dtype() &&
                 t->is_contiguous(),
             op, ": expected contiguous CUDA tensors of one dtype and device, got one ", dtype_name(t->dtype()),
             " on ", t->device().str(), " with strides ", shape_str(t->strides()));
}

}  // namespace

void cuda_masked_softmax(const Tensor& x, const Tensor& y, int64_t rows, int64_t nt, int64_t ns, bool causal) {
  const char* op = "masked_softmax";
  check_operands(op, {&x, &y});
  if (rows == 0 || ns == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    masked_softmax_kernel<T><<<row_grid(rows), row_threads(ns)>>>(x.data<T>(), y.data<T>(), rows, nt, ns, causal);
  });
  cuda::check_launch("masked_softmax_kernel");
}

void cuda_masked_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t nt,
                                  int64_t ns, bool causal) {
  const char* op = "masked_softmax backward";
  check_operands(op, {&y, &dy, &dx});
  if (rows == 0 || ns == 0) return;
  cuda::DeviceGuard guard(y.device().index);
  dispatch_float(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    masked_softmax_backward_kernel<T>
        <<<row_grid(rows), row_threads(ns)>>>(y.data<T>(), dy.data<T>(), dx.data<T>(), rows, nt, ns, causal);
  });
  cuda::check_launch("masked_softmax_backward_kernel");
}

void cuda_elliptical_metric(const Tensor& v, const Tensor& v_prev, const Tensor& m, int64_t nb, int64_t nt,
                            int64_t nd, bool causal) {
  const char* op = "elliptical_metric";
  check_operands(op, {&v, &v_prev, &m});
  if (nb == 0 || nt == 0 || nd == 0) return;
  cuda::DeviceGuard guard(v.device().index);
  const int64_t rows = nb * (causal ? nt : 1);
  Tensor acc = Tensor::empty({rows, nd}, DType::Float64, v.device());
  dispatch_float(v.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    metric_sums_kernel<T><<<cuda::grid_for(nb * nd), kThreads>>>(v.data<T>(), v_prev.data<T>(), acc.data<double>(),
                                                                  nb, nt, nd, causal);
    cuda::check_launch("metric_sums_kernel");
    metric_normalize_kernel<T><<<row_grid(rows), row_threads(nd)>>>(acc.data<double>(), m.data<T>(), rows, nd);
    cuda::check_launch("metric_normalize_kernel");
  });
}

}  // namespace moegrad
