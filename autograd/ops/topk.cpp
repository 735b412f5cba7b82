// topk: the k largest (or smallest) entries along a dim, sorted so that
// column 0 is the extreme, ties going to the lower index and NaN counting as
// larger than any number. The kernel works on rows of the last dim (another
// dim is moved last and back) and runs in parallel over rows, partially
// sorting an index array per row. Backward: dx is zero except at the selected
// entries, which receive dvalues (a scatter_add into zeros: the indices of a
// row are distinct). CUDA tensors take the same plan with the kernel of
// cuda/topk.h (same order, same ties).
#include <cmath>
#include <numeric>

#include "autograd/ops/util.h"
#include "cuda/topk.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

// a > b, with NaN above every number (a strict weak order, unlike raw >).
template <typename T>
bool greater(T a, T b) {
  if (std::isnan(a)) return !std::isnan(b);
  return !std::isnan(b) && a > b;
}

// Sorted top k of each row of x ([rows, n], contiguous) into values/indices [rows, k].
template <typename T>
void topk_rows(const T* x, int64_t rows, int64_t n, int64_t k, bool largest, T* values, int64_t* indices) {
  parallel_for(rows, grain_for(n), [&](int64_t b, int64_t e) {
    std::vector<int64_t> order(n);
    for (int64_t r = b; r < e; ++r) {
      const T* row = x + r * n;
      std::iota(order.begin(), order.end(), int64_t{0});
      // i goes before j when it is more extreme, or equal and earlier
      auto before = [&](int64_t i, int64_t j) {
        const T a = largest ? row[i] : row[j], c = largest ? row[j] : row[i];
        return greater(a, c) || (!greater(c, a) && i < j);
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), before);
      for (int64_t c = 0; c < k; ++c) {
        values[r * k + c] = row[order[c]];
        indices[r * k + c] = order[c];
      }
    }
  });
}

}  // namespace

TopK topk(const Tensor& x, int64_t k, int64_t dim, bool largest) {
  check_float(x, "topk");
  MG_CHECK(x.dim() > 0, "topk: expected a tensor with at least one dimension, got a 0-d tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "topk"), last = x.dim() - 1;
  const int64_t n = x.shape()[d];
  MG_CHECK(k >= 1 && k <= n, "topk: k = ", k, " out of range [1, ", n, "] for dimension ", d, " of shape ",
           shape_str(x.shape()));
  Tensor rows_x = contiguous(transpose(x.detach(), d, last)).detach();
  Shape out_shape = rows_x.shape();
  out_shape[last] = k;
  Tensor values = Tensor::empty(out_shape, x.dtype(), x.device());
  Tensor indices = Tensor::empty(out_shape, DType::Int64, x.device());
  if (x.device().is_cuda())
    MOEGRAD_CUDA(cuda_topk_rows(rows_x, rows_x.numel() / n, n, k, largest, values, indices));
  else
    dispatch_float(x.dtype(), "topk", [&](auto tag) {
      using T = typename decltype(tag)::type;
      topk_rows<T>(rows_x.data<T>(), rows_x.numel() / n, n, k, largest, values.data<T>(), indices.data<int64_t>());
    });
  values = contiguous(transpose(values, d, last));
  indices = contiguous(transpose(indices, d, last));
  Shape in_shape = x.shape();
  attach_backward(values, "topk", {x}, [in_shape, d, indices](const Tensor& dvalues) {
    Tensor dx = Tensor::zeros(in_shape, dvalues.dtype(), dvalues.device());
    return std::vector<Tensor>{scatter_add(dx, d, indices, dvalues)};
  });
  return {values, indices};
}

}  // namespace moegrad
