// What the elementwise, copy and reduction kernels share: the element offsets
// of a few strided operands over one shape (dims of size 1 dropped and dims
// that are contiguous for every operand merged, at most 8 left; int64
// indexing), grid-stride loop sizes, and the launch check.
#pragma once
#include <algorithm>
#include <array>
#include <vector>

#include "cuda/runtime.h"

namespace moegrad::cuda {

constexpr int kMaxKernelDims = 8;
constexpr int kThreads = 256;

// Offsets of N operands at flat (row-major) element i of a shape.
template <int N>
struct Offsets {
  int ndim = 0;
  int64_t sizes[kMaxKernelDims] = {};
  int64_t strides[N][kMaxKernelDims] = {};

  __device__ void at(int64_t i, int64_t (&off)[N]) const {
    if (ndim == 1) {
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] = i * strides[k][0];
      return;
    }
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = ndim - 1; d >= 0; --d) {
      const int64_t q = i / sizes[d], r = i - q * sizes[d];
      i = q;
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += r * strides[k][d];
    }
  }
};

// Offsets over `shape` where operand k has strides[k] (a broadcast dim has
// stride 0). Error naming op when more than 8 dims remain after merging.
template <int N>
Offsets<N> make_offsets(const Shape& shape, const std::array<const Shape*, N>& strides, const char* op) {
  // groups of merged dims, innermost first: size and each operand's stride
  std::vector<int64_t> sizes;
  std::vector<std::array<int64_t, N>> st;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    if (shape[d] == 1) continue;
    std::array<int64_t, N> s;
    for (int k = 0; k < N; ++k) s[k] = (*strides[k])[d];
    bool merge = !sizes.empty();
    for (int k = 0; merge && k < N; ++k) merge = s[k] == st.back()[k] * sizes.back();
    if (merge) {
      sizes.back() *= shape[d];
    } else {
      sizes.push_back(shape[d]);
      st.push_back(s);
    }
  }
  MG_CHECK(sizes.size() <= static_cast<size_t>(kMaxKernelDims), op, ": the CUDA kernels take at most ",
           kMaxKernelDims, " dimensions after merging contiguous ones; shape ", shape_str(shape), " leaves ",
           sizes.size());
  Offsets<N> o;
  o.ndim = static_cast<int>(sizes.size());
  for (int g = 0; g < o.ndim; ++g) {
    const int d = o.ndim - 1 - g;  // outermost first
    o.sizes[d] = sizes[g];
    for (int k = 0; k < N; ++k) o.strides[k][d] = st[g][k];
  }
  return o;
}

// Blocks for a grid-stride loop over n items (n > 0).
inline unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535));
}

// Kernels that give each row to one block: the grid (rows past 65535 are
// taken by a grid-stride loop over rows) and the block, whole warps (as
// block_sum and block_max need), no more than the row has elements rounded
// up to a warp, at least one warp, at most kThreads.
inline unsigned row_grid(int64_t rows) { return static_cast<unsigned>(std::min<int64_t>(rows, 65535)); }
inline int row_threads(int64_t n) {
  return static_cast<int>(std::min<int64_t>(kThreads, std::max<int64_t>(32, (n + 31) / 32 * 32)));
}

// Error naming the kernel when its launch failed.
inline void check_launch(const char* kernel) { MG_CUDA_CHECK(cudaGetLastError(), " launching ", kernel); }

// Block-wide reductions for kernels that give a row to one block: every
// thread passes its partial value and every thread gets the block's result.
// The tree is fixed (warp shuffles, then the warps' results in warp order),
// so results do not vary from run to run. blockDim.x must be a multiple of 32
// (at most 1024) and every thread of the block must call it; two calls in a
// row are safe (the leading barrier keeps the shared slots of the last one).
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op) {
  __shared__ T warp_results[32];
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_down_sync(0xffffffffu, v, offset));
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) warp_results[warp] = v;
  __syncthreads();
  T r = warp_results[0];
  for (int w = 1; w < warps; ++w) r = op(r, warp_results[w]);
  return r;
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return a + b; }
};
// The larger of a and b; a NaN in either wins (as the max op does: a row with
// a NaN comes out all-NaN from softmax on either device anyway).
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const { return (a != a || a > b) ? a : b; }
};

template <typename T>
__device__ T block_sum(T v) { return block_reduce(v, SumOp{}); }

// a · b rounded by itself: nvcc fuses a product and the add or subtract that
// uses it into one fused multiply-add unless told not to (--fmad=true, its
// default, for every GPU), which rounds a cancelling difference differently.
// The kernels use this where a product is subtracted from a value of similar
// size, so that their result there is the one the formula gives with every
// operation rounded (as the CPU op without FMA contraction) and never depends
// on the compiler's choice or the GPU.
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
template <typename T>
__device__ T block_max(T v) { return block_reduce(v, MaxOp{}); }

}  // namespace moegrad::cuda

// for (int64_t i = first of this thread; i < n; i += all threads)
#define MG_GRID_STRIDE(i, n)                                                                    \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n);        \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)
