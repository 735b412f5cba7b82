// Readable printing: nested brackets, at most 6 entries per dimension shown
// (first and last 3) with "..." between, then dtype, shape and device.
#include <iomanip>
#include <ostream>

#include "tensor/tensor.h"

namespace moegrad {

static void print_rec(std::ostream& os, const Tensor& t, Shape& idx, int64_t d, int indent) {
  const int64_t n = t.shape()[d];
  const bool cut = n > 6;
  os << "[";
  for (int64_t i = 0; i < n; ++i) {
    if (cut && i == 3) {
      os << (d + 1 == t.dim() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - 3;
    }
    idx[d] = i;
    if (d + 1 == t.dim()) {
      if (t.dtype() == DType::Int64 || t.dtype() == DType::Bool)
        os << static_cast<int64_t>(t.at(idx));
      else
        os << std::setprecision(6) << t.at(idx);
    } else {
      print_rec(os, t, idx, d + 1, indent + 1);
    }
    if (i + 1 < n) os << (d + 1 == t.dim() ? ", " : ",\n" + std::string(indent + 1, ' '));
  }
  os << "]";
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  if (!t.defined()) return os << "tensor(undefined)";
  os << "tensor(";
  if (!t.device().is_cpu()) {
    os << "<on " << t.device().str() << ">";
  } else if (t.dim() == 0) {
    os << t.item();
  } else if (t.numel() == 0) {
    os << "[]";
  } else {
    Shape idx(t.dim(), 0);
    print_rec(os, t, idx, 0, 7);
  }
  os << ", dtype=" << dtype_name(t.dtype()) << ", shape=" << shape_str(t.shape());
  if (t.requires_grad()) os << ", requires_grad";
  return os << ")";
}

}  // namespace moegrad
