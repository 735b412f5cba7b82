// The router kernels of moe_router.h. Top-k, its backward and the row
// softmax give one thread to each token (rows are a handful of experts); the
// two losses sum their per-token terms in one block (each thread takes tokens
// threadIdx.x, + blockDim.x, ..., then a fixed-order block_sum), and their
// backward gives one thread to each token or logit. All in a fixed order, so
// every result is the same on every run; the softmax follows softmax.cpp step
// for step (max, exp in T, sum in double, times 1 / sum).
#include <cmath>

#include "cuda/launch.cuh"
#include "cuda/moe_router.h"

namespace moegrad {

namespace {

// a > b with NaN above every number, as topk.cpp's greater.
template <typename T>
__device__ bool greater_nan(T a, T b) {
  if (a != a) return b == b;
  return b == b && a > b;
}

// Entry i of row goes before entry j in the top-k order: larger, or equal and earlier.
template <typename T>
__device__ bool goes_before(const T* row, int64_t i, int64_t j) {
  return greater_nan(row[i], row[j]) || (!greater_nan(row[j], row[i]) && i < j);
}

// y = softmax(v) over m > 0 entries, as softmax.cpp (std::max's NaN handling included).
template <typename T>
__device__ void softmax_row(const T* v, int64_t m, T* y) {
  T mx = v[0];
  for (int64_t i = 1; i < m; ++i) mx = mx < v[i] ? v[i] : mx;
  double s = 0;
  for (int64_t i = 0; i < m; ++i) {
    const T e = exp(v[i] - mx);
    s += e;
    y[i] = e;
  }
  const T inv = static_cast<T>(1.0 / s);
  for (int64_t i = 0; i < m; ++i) y[i] *= inv;
}

// The k entries of each row in top-k order: the c-th is the first, in that
// (strict, total) order, of the entries after the (c-1)-th, so no memory of
// the chosen ones is needed. O(k E) per token.
template <typename T>
__global__ void router_topk_rows(const T* logits, int64_t n, int64_t E, int64_t k, T* values, int64_t* indices,
                                 T* scores) {
  MG_GRID_STRIDE(i, n) {
    const T* row = logits + i * E;
    int64_t prev = -1;
    for (int64_t c = 0; c < k; ++c) {
      int64_t best = -1;
      for (int64_t e = 0; e < E; ++e) {
        if (prev >= 0 && !goes_before(row, prev, e)) continue;  // chosen already
        if (best < 0 || goes_before(row, e, best)) best = e;
      }
      values[i * k + c] = row[best];
      indices[i * k + c] = best;
      prev = best;
    }
    softmax_row(values + i * k, k, scores + i * k);
  }
}

template <typename T>
__global__ void router_topk_backward_rows(const T* dvalues, const int64_t* indices, int64_t n, int64_t E, int64_t k,
                                          T* dlogits) {
  MG_GRID_STRIDE(t, n * E) {
    const int64_t i = t / E, e = t - i * E;
    T g = 0;
    for (int64_t j = 0; j < k; ++j)
      if (indices[i * k + j] == e) g = dvalues[i * k + j];
    dlogits[t] = g;
  }
}

template <typename T>
__global__ void row_softmax(const T* x, int64_t n, int64_t m, T* y) {
  MG_GRID_STRIDE(r, n) softmax_row(x + r * m, m, y + r * m);
}

// As softmax.cpp's backward: s = Σ dy·y (products in T, sum in double).
template <typename T>
__global__ void row_softmax_backward(const T* y, const T* dy, int64_t n, int64_t m, T* dx) {
  MG_GRID_STRIDE(r, n) {
    const T* yr = y + r * m;
    const T* dyr = dy + r * m;
    double s = 0;
    for (int64_t i = 0; i < m; ++i) s += dyr[i] * yr[i];
    const T st = static_cast<T>(s);
    for (int64_t i = 0; i < m; ++i) dx[r * m + i] = yr[i] * (dyr[i] - st);
  }
}

// A row's max and Σ exp(v - max), in double.
template <typename T>
__device__ void row_max_sum(const T* row, int64_t E, double& mx, double& s) {
  mx = row[0];
  for (int64_t e = 1; e < E; ++e) mx = mx < row[e] ? static_cast<double>(row[e]) : mx;
  s = 0;
  for (int64_t e = 0; e < E; ++e) s += exp(static_cast<double>(row[e]) - mx);
}

// f_e, the share of the slots routed to expert e (0 without slots, as on the CPU).
__device__ double share(const int64_t* offsets, int64_t e, int64_t slots) {
  return slots > 0 ? static_cast<double>(offsets[e + 1] - offsets[e]) / static_cast<double>(slots) : 0.0;
}

// Σ_e f_e p_e for one row, p its softmax.
template <typename T>
__device__ double row_share_dot(const T* row, int64_t E, const int64_t* offsets, int64_t slots, double mx,
                                double s) {
  double dot = 0;
  for (int64_t e = 0; e < E; ++e) dot += share(offsets, e, slots) * exp(static_cast<double>(row[e]) - mx);
  return dot / s;
}

// One block: loss = E / n · Σ_i Σ_e f_e p_ie.
template <typename T>
__global__ void balance_loss_block(const T* logits, int64_t n, int64_t E, const int64_t* offsets, int64_t slots,
                                   T* loss) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    double mx, s;
    row_max_sum(logits + i * E, E, mx, s);
    acc += row_share_dot(logits + i * E, E, offsets, slots, mx, s);
  }
  const double total = cuda::block_sum(acc);
  if (threadIdx.x == 0) loss[0] = static_cast<T>(static_cast<double>(E) * total / static_cast<double>(n));
}

template <typename T>
__global__ void balance_loss_backward_rows(const T* logits, int64_t n, int64_t E, const int64_t* offsets,
                                           int64_t slots, const T* dloss, T* dlogits) {
  MG_GRID_STRIDE(i, n) {
    const T* row = logits + i * E;
    double mx, s;
    row_max_sum(row, E, mx, s);
    const double dot = row_share_dot(row, E, offsets, slots, mx, s);
    const double scale = static_cast<double>(dloss[0]) * static_cast<double>(E) / static_cast<double>(n);
    for (int64_t c = 0; c < E; ++c) {
      const double p = exp(static_cast<double>(row[c]) - mx) / s;
      dlogits[i * E + c] = static_cast<T>(scale * p * (share(offsets, c, slots) - dot));
    }
  }
}

// One block: loss = mean_i lse_i², lse_i = max + log Σ exp(v - max).
template <typename T>
__global__ void z_loss_block(const T* logits, int64_t n, int64_t E, double* lse, T* loss) {
  double acc = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    double mx, s;
    row_max_sum(logits + i * E, E, mx, s);
    const double l = mx + log(s);
    lse[i] = l;
    acc += l * l;
  }
  const double total = cuda::block_sum(acc);
  if (threadIdx.x == 0) loss[0] = static_cast<T>(total / static_cast<double>(n));
}

template <typename T>
__global__ void z_loss_backward_elements(const T* logits, const double* lse, int64_t n, int64_t E, const T* dloss,
                                         T* dlogits) {
  MG_GRID_STRIDE(t, n * E) {
    const int64_t i = t / E;
    const double l = lse[i];
    const double g = static_cast<double>(dloss[0]) * 2.0 / static_cast<double>(n);
    dlogits[t] = static_cast<T>(g * l * exp(static_cast<double>(logits[t]) - l));
  }
}

}  // namespace

void cuda_router_topk(const Tensor& logits, int64_t k, const Tensor& values, const Tensor& indices,
                      const Tensor& scores) {
  const int64_t n = logits.size(0), E = logits.size(1);
  if (n == 0) return;
  cuda::DeviceGuard guard(logits.device().index);
  dispatch_float(logits.dtype(), "router top-k", [&](auto tag) {
    using T = typename decltype(tag)::type;
    router_topk_rows<T><<<cuda::grid_for(n), cuda::kThreads>>>(logits.data<T>(), n, E, k, values.data<T>(),
                                                               indices.data<int64_t>(), scores.data<T>());
  });
  cuda::check_launch("router_topk_rows");
}

void cuda_router_topk_backward(const Tensor& dvalues, const Tensor& indices, const Tensor& dlogits) {
  const int64_t n = dlogits.size(0), E = dlogits.size(1), k = indices.size(1);
  if (n * E == 0) return;
  cuda::DeviceGuard guard(dlogits.device().index);
  dispatch_float(dlogits.dtype(), "router top-k backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    router_topk_backward_rows<T><<<cuda::grid_for(n * E), cuda::kThreads>>>(
        dvalues.data<T>(), indices.data<int64_t>(), n, E, k, dlogits.data<T>());
  });
  cuda::check_launch("router_topk_backward_rows");
}

void cuda_row_softmax(const Tensor& x, const Tensor& y) {
  const int64_t n = x.size(0), m = x.size(1);
  if (n * m == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "router softmax", [&](auto tag) {
    using T = typename decltype(tag)::type;
    row_softmax<T><<<cuda::grid_for(n), cuda::kThreads>>>(x.data<T>(), n, m, y.data<T>());
  });
  cuda::check_launch("row_softmax");
}

void cuda_row_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx) {
  const int64_t n = y.size(0), m = y.size(1);
  if (n * m == 0) return;
  cuda::DeviceGuard guard(y.device().index);
  dispatch_float(y.dtype(), "router softmax backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    row_softmax_backward<T><<<cuda::grid_for(n), cuda::kThreads>>>(y.data<T>(), dy.data<T>(), n, m, dx.data<T>());
  });
  cuda::check_launch("row_softmax_backward");
}

void cuda_balance_loss(const Tensor& logits, const Tensor& offsets, int64_t slots, const Tensor& loss) {
  const int64_t n = logits.size(0), E = logits.size(1);
  cuda::DeviceGuard guard(logits.device().index);
  dispatch_float(logits.dtype(), "switch_balance_loss", [&](auto tag) {
    using T = typename decltype(tag)::type;
    balance_loss_block<T><<<1, cuda::kThreads>>>(logits.data<T>(), n, E, offsets.data<int64_t>(), slots,
                                                 loss.data<T>());
  });
  cuda::check_launch("balance_loss_block");
}

void cuda_balance_loss_backward(const Tensor& logits, const Tensor& offsets, int64_t slots, const Tensor& dloss,
                                const Tensor& dlogits) {
  const int64_t n = logits.size(0), E = logits.size(1);
  if (n * E == 0) return;
  cuda::DeviceGuard guard(logits.device().index);
  dispatch_float(logits.dtype(), "switch_balance_loss backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    balance_loss_backward_rows<T><<<cuda::grid_for(n), cuda::kThreads>>>(
        logits.data<T>(), n, E, offsets.data<int64_t>(), slots, dloss.data<T>(), dlogits.data<T>());
  });
  cuda::check_launch("balance_loss_backward_rows");
}

void cuda_z_loss(const Tensor& logits, const Tensor& lse, const Tensor& loss) {
  const int64_t n = logits.size(0), E = logits.size(1);
  cuda::DeviceGuard guard(logits.device().index);
  dispatch_float(logits.dtype(), "router_z_loss", [&](auto tag) {
    using T = typename decltype(tag)::type;
    z_loss_block<T><<<1, cuda::kThreads>>>(logits.data<T>(), n, E, lse.data<double>(), loss.data<T>());
  });
  cuda::check_launch("z_loss_block");
}

void cuda_z_loss_backward(const Tensor& logits, const Tensor& lse, const Tensor& dloss, const Tensor& dlogits) {
  const int64_t n = logits.size(0), E = logits.size(1);
  if (n * E == 0) return;
  cuda::DeviceGuard guard(logits.device().index);
  dispatch_float(logits.dtype(), "router_z_loss backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    z_loss_backward_elements<T><<<cuda::grid_for(n * E), cuda::kThreads>>>(
        logits.data<T>(), lse.data<double>(), n, E, dloss.data<T>(), dlogits.data<T>());
  });
  cuda::check_launch("z_loss_backward_elements");
}

}  // namespace moegrad
