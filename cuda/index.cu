// The kernels of index.h. Every output element (every line, for scatter_add)
// belongs to one thread, which reads or sums its sources in index order; the
// only atomic is the integer atomicMin of the bounds check, whose result (the
// first bad position) does not depend on the order the threads run in.
#include "cuda/index.h"
#include "cuda/launch.cuh"
#include "cuda/sort.h"

namespace moegrad {

namespace {

using cuda::Offsets;

// The counting sort's two [n, chunks] int64 tables stay under 2 x 64 MiB;
// larger problems take the per-column kernel.
constexpr int64_t kMaxSortTable = int64_t{1} << 23;
constexpr int64_t kSortChunk = 256;  // cuda/sort.cu's chunk size, for the table size only

// *first = min(*first, i) over the positions i with idx[i] outside [0, n).
__global__ void first_out_of_range_kernel(const int64_t* idx, int64_t m, int64_t n, unsigned long long* first) {
  MG_GRID_STRIDE(i, m) {
    const int64_t v = idx[i];
    if (v < 0 || v >= n) atomicMin(first, static_cast<unsigned long long>(i));
  }
}

// e = (o * m + i) * inner + j
template <typename T>
__global__ void select_rows_kernel(const T* x, int64_t n, int64_t inner, const int64_t* idx, int64_t m, T* out,
                                   int64_t total) {
  MG_GRID_STRIDE(e, total) {
    const int64_t j = e % inner, r = e / inner;
    const int64_t i = r % m, o = r / m;
    out[e] = x[(o * n + idx[i]) * inner + j];
  }
}

// e = (o * n + row) * inner + j; sources of `row` are order[offsets[row] ..
// offsets[row + 1]), positions in the index in increasing order.
template <typename T>
__global__ void add_sorted_rows_kernel(T* out, int64_t n, int64_t inner, const int64_t* order,
                                       const int64_t* offsets, const T* src, int64_t m, int64_t total) {
  MG_GRID_STRIDE(e, total) {
    const int64_t j = e % inner, r = e / inner;
    const int64_t row = r % n, o = r / n;
    T acc = out[e];
    for (int64_t t = offsets[row]; t < offsets[row + 1]; ++t) acc += src[(o * m + order[t]) * inner + j];
    out[e] = acc;
  }
}

// c = o * inner + j: the column walks all m indices in order, as the CPU does.
template <typename T>
__global__ void add_rows_by_column_kernel(T* out, int64_t n, int64_t inner, const int64_t* idx, const T* src,
                                          int64_t m, int64_t columns) {
  MG_GRID_STRIDE(c, columns) {
    const int64_t o = c / inner, j = c % inner;
    for (int64_t i = 0; i < m; ++i) out[(o * n + idx[i]) * inner + j] += src[(o * m + i) * inner + j];
  }
}

// Offsets: out, index, x (x's stride along d zeroed; xd adds index * stride).
template <typename T>
__global__ void gather_kernel(const T* x, int64_t xd, const int64_t* index, T* out, Offsets<3> o, int64_t total) {
  MG_GRID_STRIDE(p, total) {
    int64_t off[3];
    o.at(p, off);
    out[off[0]] = x[off[2] + index[off[1]] * xd];
  }
}

// One thread per line: Offsets give index, src and out at the line's start
// (out at coordinate 0 along d); the line has len elements along d.
template <typename T>
__global__ void scatter_add_lines_kernel(T* out, int64_t od, const int64_t* index, int64_t id, const T* src,
                                         int64_t sd, int64_t len, Offsets<3> o, int64_t lines) {
  MG_GRID_STRIDE(l, lines) {
    int64_t off[3];
    o.at(l, off);
    for (int64_t k = 0; k < len; ++k) out[off[2] + index[off[0] + k * id] * od] += src[off[1] + k * sd];
  }
}

}  // namespace

int64_t cuda_first_out_of_range(const Tensor& idx, int64_t n) {
  const int64_t m = idx.numel();
  if (m == 0) return -1;
  cuda::DeviceGuard guard(idx.device().index);
  Tensor first = Tensor::full({1}, static_cast<double>(m), DType::Int64, idx.device());
  first_out_of_range_kernel<<<cuda::grid_for(m), cuda::kThreads>>>(
      idx.data<int64_t>(), m, n, reinterpret_cast<unsigned long long*>(first.data<int64_t>()));
  cuda::check_launch("first_out_of_range_kernel");
  const int64_t pos = static_cast<int64_t>(first.item());
  return pos < m ? pos : -1;
}

void cuda_select_rows(const Tensor& x, int64_t outer, int64_t n, int64_t inner, const Tensor& idx,
                      const Tensor& out) {
  const int64_t m = idx.numel(), total = outer * m * inner;
  if (total == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  dispatch_float(x.dtype(), "index_select", [&](auto tag) {
    using T = typename decltype(tag)::type;
    select_rows_kernel<T><<<cuda::grid_for(total), cuda::kThreads>>>(x.data<T>(), n, inner, idx.data<int64_t>(), m,
                                                                     out.data<T>(), total);
  });
  cuda::check_launch("select_rows_kernel");
}

void cuda_add_rows(const Tensor& out, int64_t outer, int64_t n, int64_t inner, const Tensor& idx,
                   const Tensor& src) {
  const int64_t m = idx.numel();
  if (m == 0 || outer * inner == 0) return;
  cuda::DeviceGuard guard(out.device().index);
  const int64_t chunks = (m + kSortChunk - 1) / kSortChunk;
  if (n <= kMaxSortTable / chunks) {
    CudaCountingSort sorted = cuda_counting_sort(idx, n, "index_add");
    const int64_t total = outer * n * inner;
    dispatch_float(out.dtype(), "index_add", [&](auto tag) {
      using T = typename decltype(tag)::type;
      add_sorted_rows_kernel<T><<<cuda::grid_for(total), cuda::kThreads>>>(
          out.data<T>(), n, inner, sorted.order.data<int64_t>(), sorted.offsets.data<int64_t>(), src.data<T>(), m,
          total);
    });
    cuda::check_launch("add_sorted_rows_kernel");
    return;
  }
  const int64_t columns = outer * inner;
  dispatch_float(out.dtype(), "index_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_rows_by_column_kernel<T><<<cuda::grid_for(columns), cuda::kThreads>>>(
        out.data<T>(), n, inner, idx.data<int64_t>(), src.data<T>(), m, columns);
  });
  cuda::check_launch("add_rows_by_column_kernel");
}

void cuda_gather(const Tensor& x, int64_t d, const Tensor& index, const Tensor& out) {
  const int64_t total = index.numel();
  if (total == 0) return;
  cuda::DeviceGuard guard(x.device().index);
  Shape xs = x.strides();
  xs[d] = 0;  // the coordinate along d comes from the index
  Offsets<3> o = cuda::make_offsets<3>(index.shape(), {&out.strides(), &index.strides(), &xs}, "gather");
  const int64_t xd = x.strides()[d];
  dispatch_float(x.dtype(), "gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_kernel<T><<<cuda::grid_for(total), cuda::kThreads>>>(x.data<T>(), xd, index.data<int64_t>(),
                                                                out.data<T>(), o, total);
  });
  cuda::check_launch("gather_kernel");
}

void cuda_scatter_add(const Tensor& out, int64_t d, const Tensor& index, const Tensor& src) {
  if (index.numel() == 0) return;
  cuda::DeviceGuard guard(out.device().index);
  const int64_t len = index.shape()[d], lines = index.numel() / len;
  Shape line_shape = index.shape();
  line_shape[d] = 1;  // dropped by make_offsets: the offsets of each line's start
  Offsets<3> o =
      cuda::make_offsets<3>(line_shape, {&index.strides(), &src.strides(), &out.strides()}, "scatter_add");
  dispatch_float(out.dtype(), "scatter_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    scatter_add_lines_kernel<T><<<cuda::grid_for(lines), cuda::kThreads>>>(
        out.data<T>(), out.strides()[d], index.data<int64_t>(), index.strides()[d], src.data<T>(),
        src.strides()[d], len, o, lines);
  });
  cuda::check_launch("scatter_add_lines_kernel");
}

}  // namespace moegrad
