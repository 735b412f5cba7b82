// Shared validation and shape helpers for the op implementations.
#include "autograd/ops/util.h"

namespace moegrad {

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t n = ndim == 0 ? 1 : ndim;  // a 0-d tensor accepts dim 0 / -1
  MG_CHECK(dim >= -n && dim < n, op, ": dimension ", dim, " out of range for a ", ndim, "-d tensor");
  return dim < 0 ? dim + n : dim;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MG_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
             " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

void check_float(const Tensor& t, const char* op, const char* what) {
  MG_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
  MG_CHECK(is_floating(t.dtype()), op, ": ", what, " must be float32 or float64, got ", dtype_name(t.dtype()),
           " of shape ", shape_str(t.shape()));
}

void check_same_type(const Tensor& a, const Tensor& b, const char* op) {
  MG_CHECK(a.dtype() == b.dtype(), op, ": dtypes differ: ", dtype_name(a.dtype()), " ", shape_str(a.shape()),
           " vs ", dtype_name(b.dtype()), " ", shape_str(b.shape()));
  MG_CHECK(a.device() == b.device(), op, ": devices differ: ", a.device().str(), " vs ", b.device().str());
}

void check_index(const Tensor& t, Device device, const char* op, const char* what) {
  MG_CHECK(t.defined(), op, ": ", what, " is an undefined tensor");
  MG_CHECK(t.dtype() == DType::Int64, op, ": ", what, " must be int64, got ", dtype_name(t.dtype()), " of shape ",
           shape_str(t.shape()));
  MG_CHECK(t.device() == device, op, ": ", what, " is on ", t.device().str(), ", expected ", device.str());
}

int64_t expanded_dim(const Tensor& t) {
  if (t.numel() == 0) return -1;  // an empty tensor's contiguous strides may be 0
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.size(d) > 1 && t.strides()[d] == 0) return d;
  return -1;
}

}  // namespace moegrad
