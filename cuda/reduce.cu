// The reduction kernels of reduce.h. Row sums: short rows take one thread per
// row; long rows are split into fixed chunks, each summed by one block with a
// fixed shared-memory tree, then each row's chunk sums are added in order by
// one thread. Column sums: one thread per (chunk, column), then the chunks in
// order. Chunk counts depend only on the shape, which keeps results the same
// from run to run. Max: one thread or one block per row with an
// order-independent choice (larger value, NaN first, lower index on ties).
#include <climits>

#include "cuda/launch.cuh"
#include "cuda/reduce.h"

namespace moegrad {

namespace {

using cuda::kThreads;

constexpr int64_t kSerialRow = 64;     // rows up to this long: one thread each
constexpr int64_t kChunk = 4096;       // elements per block in a long row
constexpr int64_t kTargetItems = 4096;  // enough blocks / threads to fill a GPU

template <typename In, typename Out>
__global__ void row_sums_serial(const In* x, int64_t rows, int64_t n, Out* out) {
  MG_GRID_STRIDE(r, rows) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(x[r * n + i]);
    out[r] = static_cast<Out>(s);
  }
}

// Block `item` sums chunk (item % chunks) of row (item / chunks).
template <typename In, typename Out>
__global__ void row_sums_blocks(const In* x, int64_t rows, int64_t n, int64_t chunk, int64_t chunks, Out* out) {
  __shared__ double buf[kThreads];
  for (int64_t item = blockIdx.x; item < rows * chunks; item += gridDim.x) {
    const int64_t r = item / chunks, begin = (item - r * chunks) * chunk;
    const int64_t end = begin + chunk < n ? begin + chunk : n;
    double s = 0;
    for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) s += static_cast<double>(x[r * n + i]);
    buf[threadIdx.x] = s;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w >>= 1) {
      if (threadIdx.x < w) buf[threadIdx.x] += buf[threadIdx.x + w];
      __syncthreads();
    }
    if (threadIdx.x == 0) out[item] = static_cast<Out>(buf[0]);
    __syncthreads();  // buf is reused by the next item
  }
}

// out[c * cols + j] = Σ over rows [c·chunk, (c+1)·chunk) of x[i, j].
template <typename In, typename Out>
__global__ void column_sums(const In* x, int64_t n, int64_t cols, int64_t chunk, int64_t chunks, Out* out) {
  MG_GRID_STRIDE(item, chunks * cols) {
    const int64_t c = item / cols, j = item - c * cols;
    const int64_t begin = c * chunk, end = begin + chunk < n ? begin + chunk : n;
    double s = 0;
    for (int64_t i = begin; i < end; ++i) s += static_cast<double>(x[i * cols + j]);
    out[item] = static_cast<Out>(s);
  }
}

// Does (v, i) beat the current best (b, bi)? bi < 0: no best yet.
template <typename T>
__device__ bool beats(T v, int64_t i, T b, int64_t bi) {
  if (bi < 0) return i >= 0;
  if (i < 0) return false;
  const bool vn = v != v, bn = b != b;
  if (vn || bn) return vn && (!bn || i < bi);
  return v > b || (v == b && i < bi);
}

template <typename T>
__global__ void max_rows_serial(const T* x, int64_t rows, int64_t n, T* out, int64_t* arg) {
  MG_GRID_STRIDE(r, rows) {
    const T* row = x + r * n;
    int64_t best = 0;
    for (int64_t i = 1; i < n; ++i)
      if (beats(row[i], i, row[best], best)) best = i;
    out[r] = row[best];
    arg[r] = best;
  }
}

template <typename T>
__global__ void max_rows_blocks(const T* x, int64_t rows, int64_t n, T* out, int64_t* arg) {
  __shared__ T val[kThreads];
  __shared__ int64_t idx[kThreads];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * n;
    T b = T(0);
    int64_t bi = -1;
    for (int64_t i = threadIdx.x; i < n; i += kThreads)
      if (beats(row[i], i, b, bi)) b = row[i], bi = i;
    val[threadIdx.x] = b;
    idx[threadIdx.x] = bi;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w >>= 1) {
      if (threadIdx.x < w && beats(val[threadIdx.x + w], idx[threadIdx.x + w], val[threadIdx.x], idx[threadIdx.x])) {
        val[threadIdx.x] = val[threadIdx.x + w];
        idx[threadIdx.x] = idx[threadIdx.x + w];
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) out[r] = val[0], arg[r] = idx[0];
    __syncthreads();
  }
}

template <typename T>
__global__ void scatter_rows(const T* d, const int64_t* arg, int64_t rows, int64_t n, T* g) {
  MG_GRID_STRIDE(r, rows) {
    const int64_t a = arg[r];
    if (a >= 0 && a < n) g[r * n + a] = d[r];
  }
}

void check_contiguous(const char* op, std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts) {
    MG_CHECK(t->device().is_cuda() && t->is_contiguous(), op, ": expected contiguous CUDA tensors, got one on ",
             t->device().str(), " with strides ", shape_str(t->strides()));
  }
}

}  // namespace

void cuda_sum_rows(const Tensor& x, int64_t rows, int64_t n, const Tensor& out) {
  check_contiguous("cuda_sum_rows", {&x, &out});
  if (rows == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (n <= kSerialRow) {
      row_sums_serial<T, T><<<cuda::grid_for(rows), kThreads>>>(x.data<T>(), rows, n, out.data<T>());
      return;
    }
    // enough chunks to make about kTargetItems blocks, but none shorter than kChunk
    const int64_t by_size = (n + kChunk - 1) / kChunk;
    const int64_t chunks = std::max<int64_t>(1, std::min(by_size, kTargetItems / rows));
    const int64_t chunk = (n + chunks - 1) / chunks;
    if (chunks == 1) {
      row_sums_blocks<T, T><<<cuda::row_grid(rows), kThreads>>>(x.data<T>(), rows, n, n, 1, out.data<T>());
      return;
    }
    Tensor partial = Tensor::empty({rows, chunks}, DType::Float64, x.device());
    row_sums_blocks<T, double><<<cuda::row_grid(rows * chunks), kThreads>>>(x.data<T>(), rows, n, chunk, chunks,
                                                                       partial.data<double>());
    cuda::check_launch("row_sums_blocks");
    row_sums_serial<double, T><<<cuda::grid_for(rows), kThreads>>>(partial.data<double>(), rows, chunks,
                                                                  out.data<T>());
  });
  cuda::check_launch("row sums");
}

void cuda_sum_columns(const Tensor& x, int64_t n, int64_t cols, const Tensor& out) {
  check_contiguous("cuda_sum_columns", {&x, &out});
  if (cols == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const int64_t by_size = (n + kSerialRow - 1) / kSerialRow;
    // at most 1024 chunks, so that the second pass stays short
    const int64_t chunks = std::max<int64_t>(1, std::min({by_size, (kTargetItems * kThreads) / cols, int64_t{1024}}));
    const int64_t chunk = (n + chunks - 1) / chunks;
    if (chunks == 1) {
      column_sums<T, T><<<cuda::grid_for(cols), kThreads>>>(x.data<T>(), n, cols, n, 1, out.data<T>());
      return;
    }
    Tensor partial = Tensor::empty({chunks, cols}, DType::Float64, x.device());
    column_sums<T, double><<<cuda::grid_for(chunks * cols), kThreads>>>(x.data<T>(), n, cols, chunk, chunks,
                                                                       partial.data<double>());
    cuda::check_launch("column_sums");
    column_sums<double, T><<<cuda::grid_for(cols), kThreads>>>(partial.data<double>(), chunks, cols, chunks, 1,
                                                               out.data<T>());
  });
  cuda::check_launch("column sums");
}

void cuda_max_rows(const Tensor& x, int64_t rows, int64_t n, const Tensor& out, const Tensor& arg) {
  check_contiguous("cuda_max_rows", {&x, &out, &arg});
  MG_CHECK(n > 0, "max: reducing over an empty dimension");
  if (rows == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "max", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (n <= kSerialRow)
      max_rows_serial<T><<<cuda::grid_for(rows), kThreads>>>(x.data<T>(), rows, n, out.data<T>(),
                                                             arg.data<int64_t>());
    else
      max_rows_blocks<T><<<cuda::row_grid(rows), kThreads>>>(x.data<T>(), rows, n, out.data<T>(), arg.data<int64_t>());
  });
  cuda::check_launch("max rows");
}

void cuda_scatter_rows(const Tensor& d, const Tensor& arg, int64_t rows, int64_t n, const Tensor& g) {
  check_contiguous("cuda_scatter_rows", {&d, &arg, &g});
  if (rows == 0) return;
  cuda::DeviceGuard guard(g.device().index);
  dispatch_float(g.dtype(), "max backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    scatter_rows<T><<<cuda::grid_for(rows), kThreads>>>(d.data<T>(), arg.data<int64_t>(), rows, n, g.data<T>());
  });
  cuda::check_launch("scatter_rows");
}

}  // namespace moegrad
