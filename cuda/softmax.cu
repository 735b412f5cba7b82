// The kernels of softmax.h. A row goes to one block (rows beyond the grid
// loop, the whole block moving to the next row together); the block has as
// many whole warps as the row needs, at most kThreads. Each thread walks its
// strided elements of the row, then block_max / block_sum combine the threads
// in a fixed tree, so every row's result is the same on every run. The
// arithmetic follows the CPU kernels step for step: the max subtracted before
// exp, exp in the tensor's dtype, sums in double. cross_entropy's backward is
// one thread per element; its loss sums the rows with cuda_sum_rows (fixed
// chunks, in order). No atomics anywhere. The differences that cancel
// (log_softmax's dy − exp(y)·Σdy, cross_entropy's p·s − s at the target)
// round the product by itself (cuda::mul_rn), never in a fused multiply-add.
#include "cuda/launch.cuh"
#include "cuda/reduce.h"
#include "cuda/softmax.h"

namespace moegrad {

namespace {

using cuda::kThreads;

using cuda::row_grid;
using cuda::row_threads;

// The row's max, NaN first (as block_max). Every thread starts from row[0],
// so threads without elements of their own do not need an identity. n > 0.
template <typename T>
__device__ T row_max(const T* row, int64_t n) {
  T m = row[0];
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) m = cuda::MaxOp{}(m, row[i]);
  return cuda::block_max(m);
}

template <typename T>
__global__ void softmax_rows(const T* x, T* y, int64_t rows, int64_t n, bool is_log) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    const T m = row_max(xr, n);
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
      const T e = exp(xr[i] - m);
      s += e;
      if (!is_log) yr[i] = e;
    }
    s = cuda::block_sum(s);
    // each thread rescales the elements it wrote above: no barrier needed
    if (is_log) {
      const T log_s = static_cast<T>(log(s));
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] - m - log_s;
    } else {
      const T inv = static_cast<T>(1.0 / s);
      for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] *= inv;
    }
  }
}

template <typename T>
__global__ void softmax_backward_rows(const T* y, const T* dy, T* dx, int64_t rows, int64_t n, bool is_log) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* yr = y + r * n;
    const T* dyr = dy + r * n;
    T* dxr = dx + r * n;
    double s = 0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) s += is_log ? dyr[i] : dyr[i] * yr[i];
    const T st = static_cast<T>(cuda::block_sum(s));
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
      dxr[i] = is_log ? dyr[i] - cuda::mul_rn(exp(yr[i]), st) : yr[i] * (dyr[i] - st);
  }
}

struct MinOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a < b ? a : b; }
};

// One block: out = {count of targets != ignore_index in [0, C), first
// position with a target neither ignored nor in range (-1: none), its target}.
__global__ void check_targets_kernel(const int64_t* t, int64_t N, int64_t C, int64_t ignore_index, int64_t* out) {
  int64_t count = 0, first_bad = N;  // N: no bad target seen
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) {
    const int64_t v = t[i];
    if (v == ignore_index) continue;
    if (v >= 0 && v < C) ++count;
    else first_bad = MinOp{}(first_bad, i);
  }
  count = cuda::block_reduce(count, cuda::SumOp{});
  first_bad = cuda::block_reduce(first_bad, MinOp{});
  if (threadIdx.x == 0) {
    out[0] = count;
    out[1] = first_bad < N ? first_bad : -1;
    out[2] = first_bad < N ? t[first_bad] : 0;
  }
}

// lse[i] and row_loss[i] = lse_i - x[i, t_i] per row, both 0 for an ignored
// row. Targets are checked: not ignored means in [0, C).
template <typename T>
__global__ void cross_entropy_rows(const T* x, const int64_t* t, int64_t N, int64_t C, int64_t ignore_index, T* lse,
                                   double* row_loss) {
  for (int64_t i = blockIdx.x; i < N; i += gridDim.x) {
    // t[i] is the same for the whole block, so either every thread skips the
    // block reductions below or none does
    if (t[i] == ignore_index) {
      if (threadIdx.x == 0) lse[i] = 0, row_loss[i] = 0;
      continue;
    }
    const T* xr = x + i * C;
    const T m = row_max(xr, C);
    double s = 0;
    for (int64_t j = threadIdx.x; j < C; j += blockDim.x) s += exp(xr[j] - m);
    s = cuda::block_sum(s);
    if (threadIdx.x == 0) {
      const double log_s = log(s);
      lse[i] = static_cast<T>(m + log_s);
      row_loss[i] = (static_cast<double>(m) - xr[t[i]]) + log_s;
    }
  }
}

// out = total / count (0 when count is 0), in out's dtype.
template <typename T>
__global__ void mean_of_total(const double* total, int64_t count, T* out) {
  *out = static_cast<T>(count > 0 ? *total / static_cast<double>(count) : 0.0);
}

template <typename T>
__global__ void cross_entropy_backward_kernel(const T* x, const T* lse, const int64_t* t, int64_t N, int64_t C,
                                              int64_t ignore_index, int64_t count, const T* dout, T* dx) {
  const T sc = static_cast<T>(count > 0 ? static_cast<double>(*dout) / static_cast<double>(count) : 0.0);
  MG_GRID_STRIDE(k, N * C) {
    const int64_t i = k / C, j = k - i * C, ti = t[i];
    if (ti == ignore_index) {
      dx[k] = T(0);
      continue;
    }
    T g = cuda::mul_rn(exp(x[k] - lse[i]), sc);  // p·sc − sc cancels as p -> 1
    if (j == ti) g -= sc;
    dx[k] = g;
  }
}

// Error naming op unless every tensor is contiguous on `device` with `dtype`.
void check_operands(const char* op, std::initializer_list<const Tensor*> ts, Device device, DType dtype) {
  MG_CHECK(device.is_cuda(), op, ": expected CUDA tensors, got one on ", device.str());
  for (const Tensor* t : ts) {
    MG_CHECK(t->device() == device, op, ": devices differ: ", t->device().str(), " vs ", device.str());
    MG_CHECK(t->dtype() == dtype, op, ": dtypes differ: ", dtype_name(t->dtype()), " vs ", dtype_name(dtype));
    MG_CHECK(t->is_contiguous(), op, ": expected contiguous tensors, got strides ", shape_str(t->strides()));
  }
}

}  // namespace

void cuda_softmax_forward(const Tensor& x, const Tensor& y, int64_t rows, int64_t n, bool log) {
  const char* op = log ? "log_softmax" : "softmax";
  check_operands(op, {&x, &y}, x.device(), x.dtype());
  if (rows == 0 || n == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_rows<T><<<row_grid(rows), row_threads(n)>>>(x.data<T>(), y.data<T>(), rows, n, log);
  });
  cuda::check_launch("softmax_rows");
}

void cuda_softmax_backward(const Tensor& y, const Tensor& dy, const Tensor& dx, int64_t rows, int64_t n, bool log) {
  const char* op = log ? "log_softmax backward" : "softmax backward";
  check_operands(op, {&y, &dy, &dx}, y.device(), y.dtype());
  if (rows == 0 || n == 0) return;
  cuda::DeviceGuard guard(y.device().index);
  dispatch_float(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    softmax_backward_rows<T><<<row_grid(rows), row_threads(n)>>>(y.data<T>(), dy.data<T>(), dx.data<T>(), rows, n,
                                                                   log);
  });
  cuda::check_launch("softmax_backward_rows");
}

TargetCheck cuda_check_targets(const Tensor& targets, int64_t C, int64_t ignore_index) {
  const char* op = "cross_entropy";
  check_operands(op, {&targets}, targets.device(), DType::Int64);
  const int64_t N = targets.numel();
  if (N == 0) return {};
  cuda::DeviceGuard guard(targets.device().index);
  Tensor out = Tensor::empty({3}, DType::Int64, targets.device());
  check_targets_kernel<<<1, kThreads>>>(targets.data<int64_t>(), N, C, ignore_index, out.data<int64_t>());
  cuda::check_launch("check_targets_kernel");
  const std::vector<int64_t> v = out.to_indices();  // the one read-back
  TargetCheck c;
  c.count = v[0], c.first_bad = v[1], c.bad_value = v[2];
  return c;
}

Tensor cuda_cross_entropy_forward(const Tensor& x, const Tensor& targets, int64_t ignore_index, int64_t count,
                                  const Tensor& lse) {
  const char* op = "cross_entropy";
  check_operands(op, {&x, &lse}, x.device(), x.dtype());
  check_operands(op, {&targets}, x.device(), DType::Int64);
  const int64_t N = x.shape()[0], C = x.shape()[1];
  cuda::DeviceGuard guard(x.device().index);
  Tensor row_loss = Tensor::empty({N}, DType::Float64, x.device());
  Tensor total = Tensor::empty({1}, DType::Float64, x.device());
  Tensor loss = Tensor::empty({}, x.dtype(), x.device());
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (N > 0) {
      cross_entropy_rows<T><<<row_grid(N), row_threads(C)>>>(x.data<T>(), targets.data<int64_t>(), N, C,
                                                               ignore_index, lse.data<T>(), row_loss.data<double>());
      cuda::check_launch("cross_entropy_rows");
    }
    cuda_sum_rows(row_loss, 1, N, total);  // fixed chunks in order; 0 for N = 0
    mean_of_total<T><<<1, 1>>>(total.data<double>(), count, loss.data<T>());
  });
  cuda::check_launch("mean_of_total");
  return loss;
}

Tensor cuda_cross_entropy_backward(const Tensor& x, const Tensor& lse, const Tensor& targets, int64_t ignore_index,
                                   int64_t count, const Tensor& dout) {
  const char* op = "cross_entropy backward";
  check_operands(op, {&x, &lse}, x.device(), x.dtype());
  check_operands(op, {&targets}, x.device(), DType::Int64);
  MG_CHECK(dout.numel() == 1 && dout.device() == x.device() && dout.dtype() == x.dtype(), op,
           ": expected a one-element ", dtype_name(x.dtype()), " gradient on ", x.device().str(), ", got ",
           dtype_name(dout.dtype()), " ", shape_str(dout.shape()), " on ", dout.device().str());
  const int64_t N = x.shape()[0], C = x.shape()[1];
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  if (N * C == 0) return dx;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    cross_entropy_backward_kernel<T><<<cuda::grid_for(N * C), kThreads>>>(
        x.data<T>(), lse.data<T>(), targets.data<int64_t>(), N, C, ignore_index, count, dout.data<T>(), dx.data<T>());
  });
  cuda::check_launch("cross_entropy_backward_kernel");
  return dx;
}

}  // namespace moegrad
