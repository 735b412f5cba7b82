// Indexing ops: embedding, index_select / index_add (a 1-d index along one
// dim) and gather / scatter_add (an index of x's rank), as in PyTorch. Each
// pair is the other's backward:
//   index_select -> dx = index_add(zeros, dim, index, dout)
//   index_add    -> dx = dout, dsrc = index_select(dout, dim, index)
//   gather       -> dx = scatter_add(zeros, dim, index, dout)
//   scatter_add  -> dx = dout, dsrc = gather(dout, dim, index)
//   embedding    -> dweight = index_add of dout's rows into zeros [V, D]
// Every index is bounds-checked before anything is written. The accumulating
// kernels run in parallel over the dims that are not indexed, never over the
// indices, so each output element is summed by one thread in index order and
// results do not depend on the thread count. CUDA tensors (with their index on
// the same device) go to cuda/index.h, whose kernels sum in the same order.
#include "autograd/ops/util.h"
#include "cuda/index.h"
#include "tensor/strided.h"

namespace moegrad {

namespace {

// The first position of idx (contiguous int64) outside [0, n), or -1.
int64_t first_out_of_range(const Tensor& idx, int64_t n) {
  if (idx.device().is_cuda()) return MOEGRAD_CUDA(cuda_first_out_of_range(idx, n));
  const int64_t* p = idx.data<int64_t>();
  for (int64_t i = 0; i < idx.numel(); ++i)
    if (p[i] < 0 || p[i] >= n) return i;
  return -1;
}

// idx (contiguous int64) must lie in [0, n) to index dimension d of `shape`;
// the Error names the first index that does not.
void check_bounds(const Tensor& idx, int64_t n, int64_t d, const Shape& shape, const char* op) {
  const int64_t pos = first_out_of_range(idx, n);
  if (pos < 0) return;
  const int64_t bad = idx.as_strided({1}, {1}, idx.offset() + pos).to_indices()[0];
  MG_CHECK(false, op, ": index ", bad, " out of range [0, ", n, ") for dimension ", d, " of shape ",
           shape_str(shape));
}

// x seen as [outer, size(d), inner] around dimension d.
struct Split {
  int64_t outer = 1, n, inner = 1;
  Split(const Shape& s, int64_t d) : n(s[d]) {
    for (int64_t e = 0; e < d; ++e) outer *= s[e];
    for (size_t e = d + 1; e < s.size(); ++e) inner *= s[e];
  }
};

// out[o, i, j] = x[o, idx[i], j]; x contiguous, idx contiguous and in range.
Tensor select_rows(const Tensor& x, int64_t d, const Tensor& idx, const char* op) {
  Shape shape = x.shape();
  shape[d] = idx.numel();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  const Split s(x.shape(), d);
  if (x.device().is_cuda()) {
    MOEGRAD_CUDA(cuda_select_rows(x, s.outer, s.n, s.inner, idx, out));
    return out;
  }
  const int64_t m = idx.numel();
  const int64_t* ip = idx.data<int64_t>();
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* o = out.data<T>();
    parallel_for(s.outer * m, grain_for(s.inner),
                 [&](int64_t b, int64_t e) {
                   for (int64_t r = b; r < e; ++r) {
                     const T* from = xp + ((r / m) * s.n + ip[r % m]) * s.inner;
                     std::copy(from, from + s.inner, o + r * s.inner);
                   }
                 });
  });
  return out;
}

// out[o, idx[i], j] += src[o, i, j]; out and src contiguous, idx in range.
// Parallel over the (o, j) columns; each column adds its rows in index order.
void add_rows(const Tensor& out, int64_t d, const Tensor& idx, const Tensor& src, const char* op) {
  const Split s(out.shape(), d);
  if (out.device().is_cuda()) return MOEGRAD_CUDA(cuda_add_rows(out, s.outer, s.n, s.inner, idx, src));
  const int64_t m = idx.numel();
  const int64_t* ip = idx.data<int64_t>();
  dispatch_float(out.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = out.data<T>();
    const T* sp = src.data<T>();
    parallel_for(s.outer * s.inner, grain_for(m),
                 [&](int64_t b, int64_t e) {
                   for (int64_t c = b; c < e;) {  // columns c .. c_end share one outer index
                     const int64_t outer = c / s.inner, j0 = c % s.inner;
                     const int64_t j1 = std::min(s.inner, j0 + (e - c));
                     for (int64_t i = 0; i < m; ++i) {
                       T* to = o + (outer * s.n + ip[i]) * s.inner;
                       const T* from = sp + (outer * m + i) * s.inner;
                       for (int64_t j = j0; j < j1; ++j) to[j] += from[j];
                     }
                     c += j1 - j0;
                   }
                 });
  });
}

// Validation shared by index_select and index_add; returns the wrapped dim.
int64_t check_index_1d(const Tensor& x, int64_t dim, const Tensor& index, const char* op) {
  check_float(x, op);
  check_index(index, x.device(), op);
  MG_CHECK(x.dim() > 0, op, ": expected a tensor with at least one dimension, got a 0-d tensor");
  MG_CHECK(index.dim() == 1, op, ": index must be 1-d, got shape ", shape_str(index.shape()));
  const int64_t d = wrap_dim(dim, x.dim(), op);
  check_bounds(contiguous(index), x.shape()[d], d, x.shape(), op);
  return d;
}

// A new contiguous copy of x (a result that accumulates into x).
Tensor copy_of(const Tensor& x) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  out.copy_(x);
  return out;
}

// For gather and scatter_add: visits index one line along dimension d at a
// time, calling line(idx, plain, indexed, n, st) where idx, plain and indexed
// are the element offsets at the line start in index, in the tensor aligned
// with index (`plain`), and in the tensor addressed through index
// (`indexed`, at coordinate 0 along d), and st holds the three strides
// along the line. Lines run in parallel; each is visited by one thread.
template <typename Line>
void index_lines(const Tensor& index, int64_t d, const Shape& plain_strides, const Shape& indexed_strides,
                 Line&& line) {
  const int64_t last = index.dim() - 1;
  Shape shape = index.shape(), si = index.strides(), sp = plain_strides, sx = indexed_strides;
  sx[d] = 0;  // the coordinate along d comes from the index
  for (Shape* v : {&shape, &si, &sp, &sx}) std::swap((*v)[d], (*v)[last]);
  strided_rows<3>(shape, {&si, &sp, &sx},
                  [&](const std::array<int64_t, 3>& off, int64_t n, const std::array<int64_t, 3>& st) {
                    line(off[0], off[1], off[2], n, st);
                  });
}

// Validation shared by gather and scatter_add: index has x's rank and fits in
// x outside dim d (and in src everywhere, when given); all indices in range.
int64_t check_index_nd(const Tensor& x, int64_t dim, const Tensor& index, const Tensor* src, const char* op) {
  check_float(x, op);
  check_index(index, x.device(), op);
  MG_CHECK(x.dim() > 0, op, ": expected a tensor with at least one dimension, got a 0-d tensor");
  const int64_t d = wrap_dim(dim, x.dim(), op);
  MG_CHECK(index.dim() == x.dim(), op, ": index of shape ", shape_str(index.shape()),
           " must have the same number of dimensions as the input ", shape_str(x.shape()));
  for (int64_t e = 0; e < x.dim(); ++e)
    MG_CHECK(e == d || index.shape()[e] <= x.shape()[e], op, ": index of shape ", shape_str(index.shape()),
             " is larger than the input ", shape_str(x.shape()), " in dimension ", e);
  if (src) {
    check_float(*src, op, "src");
    check_same_type(x, *src, op);
    MG_CHECK(src->dim() == x.dim(), op, ": src of shape ", shape_str(src->shape()),
             " must have the same number of dimensions as the input ", shape_str(x.shape()));
    for (int64_t e = 0; e < x.dim(); ++e)
      MG_CHECK(index.shape()[e] <= src->shape()[e], op, ": index of shape ", shape_str(index.shape()),
               " is larger than src ", shape_str(src->shape()), " in dimension ", e);
  }
  check_bounds(contiguous(index), x.shape()[d], d, x.shape(), op);
  return d;
}

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  const int64_t d = check_index_1d(x, dim, index, "index_select");
  Tensor idx = contiguous(index);
  Tensor out = select_rows(contiguous(x).detach(), d, idx, "index_select");
  Shape in_shape = x.shape();
  attach_backward(out, "index_select", {x}, [in_shape, d, idx](const Tensor& dout) {
    return std::vector<Tensor>{index_add(Tensor::zeros(in_shape, dout.dtype(), dout.device()), d, idx, dout)};
  });
  return out;
}

Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t d = check_index_1d(x, dim, index, "index_add");
  check_float(src, "index_add", "src");
  check_same_type(x, src, "index_add");
  Shape want = x.shape();
  want[d] = index.numel();
  MG_CHECK(src.shape() == want, "index_add: src must have shape ", shape_str(want), " (input ",
           shape_str(x.shape()), " with dimension ", d, " the index's length), got ", shape_str(src.shape()));
  Tensor idx = contiguous(index);
  Tensor out = copy_of(x);
  add_rows(out, d, idx, contiguous(src).detach(), "index_add");
  attach_backward(out, "index_add", {x, src}, [d, idx](const Tensor& dout) {
    return std::vector<Tensor>{dout, index_select(dout, d, idx)};
  });
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  const int64_t d = check_index_nd(x, dim, index, nullptr, "gather");
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  const int64_t xd = x.strides()[d];
  if (x.device().is_cuda())
    MOEGRAD_CUDA(cuda_gather(x, d, index, out));
  else
    dispatch_float(x.dtype(), "gather", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const int64_t* ip = index.data<int64_t>();
      const T* xp = x.data<T>();
      T* o = out.data<T>();
      index_lines(index, d, out.strides(), x.strides(),
                  [&](int64_t i0, int64_t o0, int64_t x0, int64_t n, const std::array<int64_t, 3>& st) {
                    for (int64_t k = 0; k < n; ++k) o[o0 + k * st[1]] = xp[x0 + k * st[2] + ip[i0 + k * st[0]] * xd];
                  });
    });
  Shape in_shape = x.shape();
  Tensor idx = index.detach();
  attach_backward(out, "gather", {x}, [in_shape, d, idx](const Tensor& dout) {
    return std::vector<Tensor>{scatter_add(Tensor::zeros(in_shape, dout.dtype(), dout.device()), d, idx, dout)};
  });
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t d = check_index_nd(x, dim, index, &src, "scatter_add");
  Tensor out = copy_of(x);
  const int64_t od = out.strides()[d];
  if (x.device().is_cuda())
    MOEGRAD_CUDA(cuda_scatter_add(out, d, index, src));
  else
    dispatch_float(x.dtype(), "scatter_add", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const int64_t* ip = index.data<int64_t>();
      const T* sp = src.data<T>();
      T* o = out.data<T>();
      // one line per output column (all coordinates but d): summed in index order
      index_lines(index, d, src.strides(), out.strides(),
                  [&](int64_t i0, int64_t s0, int64_t o0, int64_t n, const std::array<int64_t, 3>& st) {
                    for (int64_t k = 0; k < n; ++k) o[o0 + k * st[2] + ip[i0 + k * st[0]] * od] += sp[s0 + k * st[1]];
                  });
    });
  Shape src_shape = src.shape();
  Tensor idx = index.detach();
  attach_backward(out, "scatter_add", {x, src}, [d, idx, src_shape](const Tensor& dout) {
    Tensor dsrc = gather(dout, d, idx);
    if (dsrc.shape() != src_shape) {  // src larger than index: zeros where nothing was read
      Tensor full = Tensor::zeros(src_shape, dout.dtype(), dout.device());
      full.as_strided(dsrc.shape(), full.strides(), 0).copy_(dsrc);
      dsrc = full;
    }
    return std::vector<Tensor>{dout, dsrc};
  });
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& indices) {
  check_float(weight, "embedding", "weight");
  check_index(indices, weight.device(), "embedding", "indices");
  MG_CHECK(weight.dim() == 2, "embedding: weight must be 2-d [V, D], got shape ", shape_str(weight.shape()));
  Tensor idx = contiguous(indices).detach();
  const int64_t vocab = weight.shape()[0], dmodel = weight.shape()[1];
  check_bounds(idx, vocab, 0, weight.shape(), "embedding");
  Tensor flat = idx.as_strided({idx.numel()}, {1}, idx.offset());
  Shape out_shape = indices.shape();
  out_shape.push_back(dmodel);
  Tensor rows = select_rows(contiguous(weight).detach(), 0, flat, "embedding");
  Tensor out = rows.as_strided(out_shape, contiguous_strides(out_shape), 0);
  attach_backward(out, "embedding", {weight}, [flat, vocab, dmodel](const Tensor& dout) {
    Tensor dweight = Tensor::zeros({vocab, dmodel}, dout.dtype(), dout.device());
    Tensor drows = contiguous(dout);
    add_rows(dweight, 0, flat, drows.as_strided({flat.numel(), dmodel}, {dmodel, 1}, drows.offset()),
             "embedding backward");
    return std::vector<Tensor>{dweight};
  });
  return out;
}

}  // namespace moegrad
