// Selection by a bool mask and clamping:
//   masked_fill(x, mask, v): v where mask, else x      dx = dout where !mask
//   where(cond, a, b):       a where cond, else b      da = dout where cond,
//                                                       db = dout where !cond
//   clamp(x, low, high):     min(max(x, low), high)    dx = dout where low <= x <= high
// The masks are broadcast (masked_fill: to x's shape; where: all three
// together), so where's gradients are summed back to each input's shape.
// CUDA tensors (mask and data on one device) go to cuda/select.h.
#include "autograd/ops/pointwise.h"
#include "cuda/select.h"

namespace moegrad {

namespace {

// Error unless m is a defined bool tensor on `device`.
void check_mask(const Tensor& m, Device device, const char* op, const char* what) {
  MG_CHECK(m.defined(), op, ": ", what, " is an undefined tensor");
  MG_CHECK(m.dtype() == DType::Bool, op, ": ", what, " must be bool, got ", dtype_name(m.dtype()), " of shape ",
           shape_str(m.shape()));
  MG_CHECK(m.device() == device, op, ": ", what, " is on ", m.device().str(), ", the input on ", device.str());
}

// The kernel of where, without validation or graph: out = cond ? a : b.
Tensor where_forward(const Tensor& cond, const Tensor& a, const Tensor& b) {
  Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  if (a.device().is_cuda()) return MOEGRAD_CUDA(cuda_where(cond, a, b, shape));
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  Shape cs = broadcast_strides(cond.shape(), cond.strides(), shape);
  Shape as = broadcast_strides(a.shape(), a.strides(), shape);
  Shape bs = broadcast_strides(b.shape(), b.strides(), shape);
  dispatch_float(a.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = out.data<T>();
    const bool* cp = cond.data<bool>();
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    strided_rows<4>(shape, {&out.strides(), &cs, &as, &bs},
                    [&](const std::array<int64_t, 4>& off, int64_t n, const std::array<int64_t, 4>& st) {
                      for (int64_t i = 0; i < n; ++i)
                        o[off[0] + i * st[0]] =
                            cp[off[1] + i * st[1]] ? ap[off[2] + i * st[2]] : bp[off[3] + i * st[3]];
                    });
  });
  return out;
}

}  // namespace

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  check_float(x, "masked_fill", "input");
  check_mask(mask, x.device(), "masked_fill", "mask");
  MG_CHECK(broadcast_shapes(x.shape(), mask.shape(), "masked_fill") == x.shape(), "masked_fill: mask of shape ",
           shape_str(mask.shape()), " does not broadcast to the input's shape ", shape_str(x.shape()));
  Tensor out;
  if (x.device().is_cuda())
    out = MOEGRAD_CUDA(cuda_masked_fill(x, mask, value));
  else
    out = dispatch_float(x.dtype(), "masked_fill", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T v = saturate_cast<T>(value);
      return map_binary<T, T, bool>(x, mask, "masked_fill", [v](T xv, bool m) { return m ? v : xv; });
    });
  Tensor md = mask.detach();
  attach_backward(out, "masked_fill", {x},
                  [md](const Tensor& dout) { return std::vector<Tensor>{masked_fill(dout, md, 0.0)}; });
  return out;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  check_float(a, "where", "first input");
  check_float(b, "where", "second input");
  check_same_type(a, b, "where");
  check_mask(cond, a.device(), "where", "condition");
  Tensor out = where_forward(cond, a, b);
  Tensor cd = cond.detach();
  attach_backward(out, "where", {a, b}, [cd, sa = a.shape(), sb = b.shape()](const Tensor& dout) {
    Tensor zero = Tensor::zeros({}, dout.dtype(), dout.device());
    return std::vector<Tensor>{sum_to(where_forward(cd, dout, zero), sa), sum_to(where_forward(cd, zero, dout), sb)};
  });
  return out;
}

Tensor clamp(const Tensor& x, double low, double high) {
  check_float(x, "clamp", "input");
  MG_CHECK(low <= high, "clamp: expected low <= high, got low ", low, " and high ", high);
  Tensor out = x.device().is_cuda() ? MOEGRAD_CUDA(cuda_clamp(x, low, high))
                                    : dispatch_float(x.dtype(), "clamp", [&](auto tag) {
                                        using T = typename decltype(tag)::type;
                                        const T lo = saturate_cast<T>(low), hi = saturate_cast<T>(high);
                                        return map_unary<T, T>(x, [lo, hi](T v) { return v < lo ? lo : (v > hi ? hi : v); });
                                      });
  attach_backward(out, "clamp", {x}, [xd = x.detach(), low, high](const Tensor& dout) {
    if (xd.device().is_cuda()) return std::vector<Tensor>{MOEGRAD_CUDA(cuda_clamp_backward(dout, xd, low, high))};
    return std::vector<Tensor>{dispatch_float(xd.dtype(), "clamp", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T lo = saturate_cast<T>(low), hi = saturate_cast<T>(high);
      return map_binary<T, T, T>(dout, xd, "clamp", [lo, hi](T g, T v) { return lo <= v && v <= hi ? g : T(0); });
    })};
  });
  return out;
}

}  // namespace moegrad
