// Reductions over a set of dimensions: sum, mean, max (with the argmax saved
// for backward), argmax, and sum_to (the reverse of broadcasting).
// Layout: the reduced dims are brought last and each output element reduces
// one contiguous row; when the reduced dims are the leading dims of a
// contiguous tensor (a bias gradient), columns are summed without a copy.
// Each output element is reduced by one thread in a fixed order (a row's sum
// is a SIMD reduction: vector lanes, then their total), so results do not
// depend on the thread count. CUDA tensors take the same plan with the
// kernels of cuda/reduce.cu (also fixed-order, so deterministic).
#include <numeric>

#include "autograd/ops/util.h"
#include "cuda/reduce.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

struct ReducePlan {
  std::vector<bool> reduced;  // per input dim
  Shape keep_shape;           // output shape with keepdim
  Shape out_shape;            // output shape as requested
  std::vector<int64_t> perm;  // kept dims first, then reduced dims
  int64_t rows = 1, row_len = 1;
};

ReducePlan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, const char* op) {
  ReducePlan p;
  const int64_t nd = x.dim();
  p.reduced.assign(nd, dims.empty());
  for (int64_t dim : dims) {
    int64_t d = wrap_dim(dim, nd, op);
    MG_CHECK(nd == 0 || !p.reduced[d], op, ": dimension ", dim, " repeated in ", shape_str(dims));
    if (nd > 0) p.reduced[d] = true;
  }
  for (int64_t d = 0; d < nd; ++d) {
    p.keep_shape.push_back(p.reduced[d] ? 1 : x.shape()[d]);
    if (!p.reduced[d]) p.out_shape.push_back(x.shape()[d]), p.perm.push_back(d), p.rows *= x.shape()[d];
    else if (keepdim) p.out_shape.push_back(1);
  }
  for (int64_t d = 0; d < nd; ++d)
    if (p.reduced[d]) p.perm.push_back(d), p.row_len *= x.shape()[d];
  return p;
}

// True when the reduced dims are exactly the leading dims and x is contiguous.
bool leading_reduction(const Tensor& x, const ReducePlan& p) {
  if (!x.is_contiguous()) return false;
  int64_t nd = x.dim(), d = 0;
  while (d < nd && p.reduced[d]) ++d;
  for (int64_t e = d; e < nd; ++e)
    if (p.reduced[e]) return false;
  return d > 0 && d < nd;
}

// x viewed as [rows, row_len] contiguous with the reduced dims last.
Tensor rows_view(const Tensor& x, const ReducePlan& p) {
  Tensor xp = permute(x.detach(), p.perm);
  return contiguous(xp).detach();
}

Tensor sum_forward(const Tensor& x, const ReducePlan& p) {
  Tensor out = Tensor::empty(p.out_shape, x.dtype(), x.device());
  if (x.device().is_cuda()) {
    if (leading_reduction(x, p))
      MOEGRAD_CUDA(cuda_sum_columns(x, p.row_len, p.rows, out));
    else
      MOEGRAD_CUDA(cuda_sum_rows(rows_view(x, p), p.rows, p.row_len, out));
    return out;
  }
  dispatch_float(x.dtype(), "sum", [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Acc = double;
    T* o = out.data<T>();
    if (leading_reduction(x, p)) {  // out[j] = sum_i x[i, j]
      const T* xp = x.data<T>();
      const int64_t cols = p.rows, n = p.row_len;
      parallel_for(cols, grain_for(n), [&](int64_t b, int64_t e) {
        std::vector<Acc> acc(e - b, 0.0);
        for (int64_t i = 0; i < n; ++i) {
          const T* row = xp + i * cols;
          for (int64_t j = b; j < e; ++j) acc[j - b] += row[j];
        }
        for (int64_t j = b; j < e; ++j) o[j] = static_cast<T>(acc[j - b]);
      });
      return;
    }
    Tensor xr = rows_view(x, p);
    const T* xp = xr.data<T>();
    const int64_t n = p.row_len;
    if (p.rows == 1) {  // one long row: fixed blocks summed in parallel, then in order
      const int64_t block = 4096, nblocks = (n + block - 1) / block;
      std::vector<Acc> partial(nblocks, 0.0);
      parallel_for(nblocks, 8, [&](int64_t b, int64_t e) {
        for (int64_t k = b; k < e; ++k) {
          Acc s = 0;
          const int64_t end = std::min(n, (k + 1) * block);
#pragma omp simd reduction(+ : s)
          for (int64_t i = k * block; i < end; ++i) s += xp[i];
          partial[k] = s;
        }
      });
      o[0] = static_cast<T>(std::accumulate(partial.begin(), partial.end(), Acc(0)));
      return;
    }
    parallel_for(p.rows, grain_for(n), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        Acc s = 0;
        const T* row = xp + r * n;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; ++i) s += row[i];
        o[r] = static_cast<T>(s);
      }
    });
  });
  return out;
}

// Gradient of a reduction: dout (out_shape) broadcast back over x's shape.
Tensor expand_back(const Tensor& dout, const Shape& keep_shape, const Shape& in_shape) {
  return expand(reshape(dout, keep_shape), in_shape);
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_float(x, "sum");
  ReducePlan p = plan_reduce(x, dims, keepdim, "sum");
  Tensor out = sum_forward(x, p);
  Shape keep = p.keep_shape, in_shape = x.shape();
  attach_backward(out, "sum", {x}, [keep, in_shape](const Tensor& dout) {
    return std::vector<Tensor>{expand_back(dout, keep, in_shape)};
  });
  return out;
}

Tensor sum(const Tensor& x) { return sum(x, {}, false); }

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_float(x, "mean");
  ReducePlan p = plan_reduce(x, dims, keepdim, "mean");
  MG_CHECK(p.row_len > 0, "mean: reducing over an empty dimension of shape ", shape_str(x.shape()));
  Tensor out;
  {
    NoGradGuard no_grad;
    out = mul(sum_forward(x, p), 1.0 / static_cast<double>(p.row_len));
  }
  Shape keep = p.keep_shape, in_shape = x.shape();
  const double scale = 1.0 / static_cast<double>(p.row_len);
  attach_backward(out, "mean", {x}, [keep, in_shape, scale](const Tensor& dout) {
    return std::vector<Tensor>{expand_back(mul(dout, scale), keep, in_shape)};
  });
  return out;
}

Tensor mean(const Tensor& x) { return mean(x, {}, false); }

// Max over the reduced dims; also returns, per output element, the position of
// the (first) maximum within its row.
static std::pair<Tensor, Tensor> max_rows(const Tensor& x, const ReducePlan& p, const char* op) {
  MG_CHECK(p.row_len > 0, op, ": reducing over an empty dimension of shape ", shape_str(x.shape()));
  Tensor out = Tensor::empty(p.out_shape, x.dtype(), x.device());
  Tensor arg = Tensor::empty(p.out_shape, DType::Int64, x.device());
  Tensor xr = rows_view(x, p);
  if (x.device().is_cuda()) {
    MOEGRAD_CUDA(cuda_max_rows(xr, p.rows, p.row_len, out, arg));
    return {out, arg};
  }
  dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = xr.data<T>();
    T* o = out.data<T>();
    int64_t* a = arg.data<int64_t>();
    const int64_t n = p.row_len;
    parallel_for(p.rows, grain_for(n), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const T* row = xp + r * n;
        int64_t best = 0;
        for (int64_t i = 1; i < n; ++i)
          if (row[i] > row[best] || (row[i] != row[i] && row[best] == row[best])) best = i;  // NaN wins
        o[r] = row[best];
        a[r] = best;
      }
    });
  });
  return {out, arg};
}

Tensor max(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  check_float(x, "max");
  ReducePlan p = plan_reduce(x, dims, keepdim, "max");
  const auto rows_max = max_rows(x, p, "max");
  Tensor out = rows_max.first, arg = rows_max.second;  // not a structured binding: clang 14 cannot capture one
  Shape in_shape = x.shape();
  std::vector<int64_t> perm = p.perm;
  const int64_t rows = p.rows, n = p.row_len;
  attach_backward(out, "max", {x}, [in_shape, perm, rows, n, arg](const Tensor& dout) {
    // scatter dout into the permuted [rows, n] layout, then permute back
    Shape perm_shape(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) perm_shape[i] = in_shape[perm[i]];
    Tensor g = Tensor::zeros(perm_shape, dout.dtype(), dout.device());
    Tensor d = contiguous(dout);
    if (d.device().is_cuda())
      MOEGRAD_CUDA(cuda_scatter_rows(d, arg, rows, n, g));
    else
      dispatch_float(dout.dtype(), "max backward", [&](auto tag) {
        using T = typename decltype(tag)::type;
        T* gp = g.data<T>();
        const T* dp = d.data<T>();
        const int64_t* a = arg.data<int64_t>();
        for (int64_t r = 0; r < rows; ++r) gp[r * n + a[r]] = dp[r];
      });
    std::vector<int64_t> inverse(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = static_cast<int64_t>(i);
    return std::vector<Tensor>{permute(g, inverse)};
  });
  return out;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  check_float(x, "argmax");
  MG_CHECK(x.dim() > 0, "argmax: needs at least one dimension");
  ReducePlan p = plan_reduce(x, {dim}, keepdim, "argmax");
  return max_rows(x, p, "argmax").second;
}

Tensor sum_to(const Tensor& x, const Shape& shape) {
  check_float(x, "sum_to");
  if (x.shape() == shape) return x;
  MG_CHECK(broadcast_shapes(shape, x.shape(), "sum_to") == x.shape(), "sum_to: ", shape_str(x.shape()),
           " is not a broadcast of ", shape_str(shape));
  const int64_t lead = x.dim() - static_cast<int64_t>(shape.size());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d < lead || (shape[d - lead] == 1 && x.shape()[d] != 1)) dims.push_back(d);
  Tensor s = dims.empty() ? x : sum(x, dims, true);
  return reshape(s, shape);
}

}  // namespace moegrad
