// The kernels of layer_norm.h. Forward and dx: a row goes to one block (rows
// beyond the grid loop, the whole block moving to the next row together) with
// as many whole warps as the row needs, at most kThreads; each thread walks
// its strided elements and block_sum adds the threads in a fixed tree. The
// arithmetic follows the CPU kernels step for step (sums and norm in double,
// mean and rstd saved in the tensor's dtype). dweight / dbias: one thread per
// (chunk of rows, column) sums its chunk in row order into a double partial,
// then one thread per column adds the chunks in order. The chunking depends
// on the shape alone, as in cuda/reduce.cu's column sums, so results are the
// same on every run. No atomics. The differences that cancel (y = norm·w + b,
// and dx's dnorm − mean(dnorm) − norm·mean(dnorm·norm)) round each product by
// itself (cuda::mul_rn), never in a fused multiply-add.
#include "cuda/launch.cuh"
#include "cuda/layer_norm.h"

namespace moegrad {

namespace {

using cuda::kThreads;

constexpr int64_t kRowsPerChunk = 64;     // dweight / dbias: rows summed by one thread, at least
constexpr int64_t kMaxChunks = 1024;      // keeps the second pass short
constexpr int64_t kTargetItems = 4096 * kThreads;  // (chunk, column) threads that fill a GPU

using cuda::row_grid;
using cuda::row_threads;

// w and b may be null (weight 1, bias 0).
template <typename T>
__global__ void layer_norm_rows(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows, int64_t D,
                                double eps) {
  const double inv_d = D > 0 ? 1.0 / static_cast<double>(D) : 0.0;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * D;
    T* yr = y + r * D;
    double m = 0, v = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) m += xr[i];
    m = cuda::block_sum(m) * inv_d;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) v += (xr[i] - m) * (xr[i] - m);
    v = cuda::block_sum(v);
    const double s = 1.0 / sqrt(v * inv_d + eps);
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const double n = (xr[i] - m) * s;
      yr[i] = static_cast<T>(cuda::mul_rn(n, static_cast<double>(w ? w[i] : T(1))) + (b ? b[i] : T(0)));
    }
    if (threadIdx.x == 0) {
      mean[r] = static_cast<T>(m);
      rstd[r] = static_cast<T>(s);
    }
  }
}

// w may be null.
template <typename T>
__global__ void layer_norm_dx_rows(const T* x, const T* w, const T* mean, const T* rstd, const T* dy, T* dx,
                                   int64_t rows, int64_t D) {
  const double inv_d = D > 0 ? 1.0 / static_cast<double>(D) : 0.0;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * D;
    const T* dyr = dy + r * D;
    T* dxr = dx + r * D;
    const double m = mean[r], s = rstd[r];
    double dnorm_mean = 0, dnorm_norm_mean = 0;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const double dnorm = cuda::mul_rn(static_cast<double>(dyr[i]), static_cast<double>(w ? w[i] : T(1)));
      dnorm_mean += dnorm;
      dnorm_norm_mean += dnorm * (xr[i] - m) * s;
    }
    dnorm_mean = cuda::block_sum(dnorm_mean) * inv_d;
    dnorm_norm_mean = cuda::block_sum(dnorm_norm_mean) * inv_d;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) {
      const double dnorm = cuda::mul_rn(static_cast<double>(dyr[i]), static_cast<double>(w ? w[i] : T(1)));
      dxr[i] = static_cast<T>((dnorm - dnorm_mean - cuda::mul_rn((xr[i] - m) * s, dnorm_norm_mean)) * s);
    }
  }
}

// pw / pb [chunks, D] (either may be null): the sums of dy * norm and of dy
// over rows [c·chunk, (c+1)·chunk) ∩ [0, rows) of column j, one thread each.
template <typename T>
__global__ void param_chunk_sums(const T* x, const T* mean, const T* rstd, const T* dy, int64_t rows, int64_t D,
                                 int64_t chunk, int64_t chunks, double* pw, double* pb) {
  MG_GRID_STRIDE(item, chunks * D) {
    const int64_t c = item / D, j = item - c * D;
    const int64_t begin = c * chunk, end = begin + chunk < rows ? begin + chunk : rows;
    double aw = 0, ab = 0;
    for (int64_t r = begin; r < end; ++r) {
      const double m = mean[r], s = rstd[r];
      aw += dy[r * D + j] * (x[r * D + j] - m) * s;
      ab += dy[r * D + j];
    }
    if (pw) pw[item] = aw;
    if (pb) pb[item] = ab;
  }
}

// out[j] = Σ_c partial[c, j] in chunk order, for partial [chunks, D].
template <typename T>
__global__ void sum_chunks(const double* partial, int64_t chunks, int64_t D, T* out) {
  MG_GRID_STRIDE(j, D) {
    double s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * D + j];
    out[j] = static_cast<T>(s);
  }
}

// Error naming op unless every defined tensor is contiguous on `device` with `dtype`.
void check_operands(const char* op, std::initializer_list<const Tensor*> ts, Device device, DType dtype) {
  MG_CHECK(device.is_cuda(), op, ": expected CUDA tensors, got one on ", device.str());
  for (const Tensor* t : ts) {
    if (!t->defined()) continue;
    MG_CHECK(t->device() == device, op, ": devices differ: ", t->device().str(), " vs ", device.str());
    MG_CHECK(t->dtype() == dtype, op, ": dtypes differ: ", dtype_name(t->dtype()), " vs ", dtype_name(dtype));
    MG_CHECK(t->is_contiguous(), op, ": expected contiguous tensors, got strides ", shape_str(t->strides()));
  }
}

template <typename T>
T* data_or_null(const Tensor& t) {
  return t.defined() ? t.data<T>() : nullptr;
}

}  // namespace

void cuda_layer_norm_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, const Tensor& y,
                             const Tensor& mean, const Tensor& rstd, int64_t rows, int64_t D, double eps) {
  const char* op = "layer_norm";
  check_operands(op, {&x, &weight, &bias, &y, &mean, &rstd}, x.device(), x.dtype());
  if (rows == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_rows<T><<<row_grid(rows), row_threads(D)>>>(x.data<T>(), data_or_null<T>(weight),
                                                             data_or_null<T>(bias), y.data<T>(), mean.data<T>(),
                                                             rstd.data<T>(), rows, D, eps);
  });
  cuda::check_launch("layer_norm_rows");
}

void cuda_layer_norm_backward_dx(const Tensor& x, const Tensor& weight, const Tensor& mean, const Tensor& rstd,
                                 const Tensor& dy, const Tensor& dx, int64_t rows, int64_t D) {
  const char* op = "layer_norm backward";
  check_operands(op, {&x, &weight, &mean, &rstd, &dy, &dx}, x.device(), x.dtype());
  if (rows == 0 || D == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    layer_norm_dx_rows<T><<<row_grid(rows), row_threads(D)>>>(x.data<T>(), data_or_null<T>(weight),
                                                                mean.data<T>(), rstd.data<T>(), dy.data<T>(),
                                                                dx.data<T>(), rows, D);
  });
  cuda::check_launch("layer_norm_dx_rows");
}

void cuda_layer_norm_backward_params(const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& dy,
                                     const Tensor& dweight, const Tensor& dbias, int64_t rows, int64_t D) {
  const char* op = "layer_norm backward";
  check_operands(op, {&x, &mean, &rstd, &dy, &dweight, &dbias}, x.device(), x.dtype());
  if (D == 0 || (!dweight.defined() && !dbias.defined())) return;
  cuda::DeviceGuard guard(x.device().index);
  // about kTargetItems (chunk, column) threads, chunks of kRowsPerChunk rows or more
  const int64_t by_size = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  const int64_t chunks = std::max<int64_t>(1, std::min({by_size, kTargetItems / D, kMaxChunks}));
  const int64_t chunk = (rows + chunks - 1) / chunks;
  Tensor pw = dweight.defined() ? Tensor::empty({chunks, D}, DType::Float64, x.device()) : Tensor();
  Tensor pb = dbias.defined() ? Tensor::empty({chunks, D}, DType::Float64, x.device()) : Tensor();
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    param_chunk_sums<T><<<cuda::grid_for(chunks * D), kThreads>>>(x.data<T>(), mean.data<T>(), rstd.data<T>(),
                                                                   dy.data<T>(), rows, D, chunk, chunks,
                                                                   data_or_null<double>(pw), data_or_null<double>(pb));
    cuda::check_launch("param_chunk_sums");
    if (pw.defined()) sum_chunks<T><<<cuda::grid_for(D), kThreads>>>(pw.data<double>(), chunks, D, dweight.data<T>());
    if (pb.defined()) sum_chunks<T><<<cuda::grid_for(D), kThreads>>>(pb.data<double>(), chunks, D, dbias.data<T>());
  });
  cuda::check_launch("sum_chunks");
}

}  // namespace moegrad
