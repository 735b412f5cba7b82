// The top-k kernel of topk.h: one block per row (a block-uniform grid-stride
// loop over rows), k rounds of "best entry after the previous pick", each
// round a strided scan by every thread and a fixed-order block reduction.
#include "cuda/launch.cuh"
#include "cuda/topk.h"

namespace moegrad {

namespace {

// a > b, with NaN above every number (topk.cpp's greater).
template <typename T>
__device__ bool greater_nan(T a, T b) {
  if (isnan(a)) return !isnan(b);
  return !isnan(b) && a > b;
}

// Positions i, j of a row: i goes before j when it is more extreme, or equal
// and earlier (topk.cpp's order, a strict total order on positions).
template <typename T>
struct Before {
  const T* row;
  bool largest;
  __device__ bool operator()(int64_t i, int64_t j) const {
    const T a = largest ? row[i] : row[j], c = largest ? row[j] : row[i];
    return greater_nan(a, c) || (!greater_nan(c, a) && i < j);
  }
};

// The earlier of two candidates in that order; -1 stands for none.
template <typename T>
struct Earlier {
  Before<T> before;
  __device__ int64_t operator()(int64_t a, int64_t b) const {
    if (a < 0) return b;
    if (b < 0) return a;
    return before(a, b) ? a : b;
  }
};

// x [rows, n]; values, indices [rows, k]. blockDim.x is a multiple of 32.
template <typename T>
__global__ void topk_rows_kernel(const T* x, int64_t rows, int64_t n, int64_t k, bool largest, T* values,
                                 int64_t* indices) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {  // the same r for the whole block
    const T* row = x + r * n;
    const Earlier<T> earlier{Before<T>{row, largest}};
    int64_t prev = -1;  // the last pick
    for (int64_t c = 0; c < k; ++c) {
      int64_t best = -1;
      for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
        if (prev < 0 || earlier.before(prev, j)) best = earlier(best, j);
      best = cuda::block_reduce(best, earlier);  // every thread of the block calls it
      if (threadIdx.x == 0) {
        values[r * k + c] = row[best];
        indices[r * k + c] = best;
      }
      prev = best;
    }
  }
}

}  // namespace

void cuda_topk_rows(const Tensor& x, int64_t rows, int64_t n, int64_t k, bool largest, const Tensor& values,
                    const Tensor& indices) {
  MG_CHECK(k >= 1 && k <= n, "topk: k = ", k, " out of range [1, ", n, "]");
  if (rows == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  const int threads = cuda::row_threads(n);
  const unsigned blocks = cuda::row_grid(rows);
  dispatch_float(x.dtype(), "topk", [&](auto tag) {
    using T = typename decltype(tag)::type;
    topk_rows_kernel<T><<<blocks, threads>>>(x.data<T>(), rows, n, k, largest, values.data<T>(),
                                             indices.data<int64_t>());
  });
  cuda::check_launch("topk_rows_kernel");
}

}  // namespace moegrad
