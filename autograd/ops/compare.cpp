// Elementwise comparisons eq, ne, lt, le, gt, ge: two float or two int64
// tensors of the same dtype, broadcast together, give a bool tensor; eq, lt
// and gt also take a scalar, compared in double precision (so eq(x, 0.1) on a
// float32 x is false for float(0.1)). Not differentiable: the result never has
// a grad_fn, so masks built from them (attention, padding) cut no graph.
// CUDA tensors go to the kernels of cuda/select.h (the same comparisons).
#include <functional>

#include "autograd/ops/pointwise.h"
#include "cuda/select.h"

namespace moegrad {

namespace {

// Error unless t is a defined tensor of dtype float32, float64 or int64.
void check_comparable(const Tensor& t, const char* op, const char* what) {
  MG_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
  MG_CHECK(is_floating(t.dtype()) || t.dtype() == DType::Int64, op, ": ", what,
           " must be float32, float64 or int64, got ", dtype_name(t.dtype()), " of shape ", shape_str(t.shape()));
}

// out = cmp(a, b) over the broadcast shape.
template <typename Cmp>
Tensor compare(const Tensor& a, const Tensor& b, const char* op, CompareOp code, Cmp cmp) {
  check_comparable(a, op, "first input");
  check_comparable(b, op, "second input");
  check_same_type(a, b, op);
  if (a.device().is_cuda()) return MOEGRAD_CUDA(cuda_compare(code, a, b, broadcast_shapes(a.shape(), b.shape(), op)));
  return dispatch_all(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    return map_binary<bool, T, T>(a, b, op, [cmp](T x, T y) { return cmp(x, y); });
  });
}

// out = cmp(a, s), each element of a converted to double.
template <typename Cmp>
Tensor compare(const Tensor& a, double s, const char* op, CompareOp code, Cmp cmp) {
  check_comparable(a, op, "input");
  if (a.device().is_cuda()) return MOEGRAD_CUDA(cuda_compare_scalar(code, a, s));
  return dispatch_all(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    return map_unary<bool, T>(a, [cmp, s](T x) { return cmp(static_cast<double>(x), s); });
  });
}

}  // namespace

Tensor eq(const Tensor& a, const Tensor& b) { return compare(a, b, "eq", CompareOp::Eq, std::equal_to<>()); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare(a, b, "ne", CompareOp::Ne, std::not_equal_to<>()); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare(a, b, "lt", CompareOp::Lt, std::less<>()); }
Tensor le(const Tensor& a, const Tensor& b) { return compare(a, b, "le", CompareOp::Le, std::less_equal<>()); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare(a, b, "gt", CompareOp::Gt, std::greater<>()); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare(a, b, "ge", CompareOp::Ge, std::greater_equal<>()); }

Tensor eq(const Tensor& a, double b) { return compare(a, b, "eq", CompareOp::Eq, std::equal_to<>()); }
Tensor lt(const Tensor& a, double b) { return compare(a, b, "lt", CompareOp::Lt, std::less<>()); }
Tensor gt(const Tensor& a, double b) { return compare(a, b, "gt", CompareOp::Gt, std::greater<>()); }

}  // namespace moegrad
