// The kernels of select.h: one thread per output element, strided operands
// through Offsets, the op of a comparison chosen by a switch that is uniform
// across a launch.
#include "cuda/launch.cuh"
#include "cuda/select.h"
#include "tensor/strided.h"

namespace moegrad {

namespace {

using cuda::Offsets;

template <typename T>
__device__ bool compare_fn(CompareOp op, T a, T b) {
  switch (op) {
    case CompareOp::Eq: return a == b;
    case CompareOp::Ne: return a != b;
    case CompareOp::Lt: return a < b;
    case CompareOp::Le: return a <= b;
    case CompareOp::Gt: return a > b;
    case CompareOp::Ge: return a >= b;
  }
  return false;
}

template <typename T>
__global__ void compare_kernel(CompareOp op, bool* out, const T* a, const T* b, Offsets<3> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[3];
    o.at(i, off);
    out[off[0]] = compare_fn(op, a[off[1]], b[off[2]]);
  }
}

template <typename T>
__global__ void compare_scalar_kernel(CompareOp op, bool* out, const T* a, double s, Offsets<2> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[2];
    o.at(i, off);
    out[off[0]] = compare_fn(op, static_cast<double>(a[off[1]]), s);
  }
}

template <typename T>
__global__ void masked_fill_kernel(T* out, const T* x, const bool* mask, T value, Offsets<3> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[3];
    o.at(i, off);
    out[off[0]] = mask[off[2]] ? value : x[off[1]];
  }
}

template <typename T>
__global__ void where_kernel(T* out, const bool* cond, const T* a, const T* b, Offsets<4> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[4];
    o.at(i, off);
    out[off[0]] = cond[off[1]] ? a[off[2]] : b[off[3]];
  }
}

template <typename T>
__global__ void clamp_kernel(T* out, const T* x, T lo, T hi, Offsets<2> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[2];
    o.at(i, off);
    const T v = x[off[1]];
    out[off[0]] = v < lo ? lo : (v > hi ? hi : v);
  }
}

template <typename T>
__global__ void clamp_backward_kernel(T* dx, const T* dout, const T* x, T lo, T hi, Offsets<3> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[3];
    o.at(i, off);
    const T v = x[off[2]];
    dx[off[0]] = lo <= v && v <= hi ? dout[off[1]] : T(0);
  }
}

// Comparisons take float32, float64 and int64 (the CPU ops' dtypes).
template <typename F>
void dispatch_comparable(DType dtype, const char* op, F&& f) {
  switch (dtype) {
    case DType::Float32: return f(type_tag<float>{});
    case DType::Float64: return f(type_tag<double>{});
    case DType::Int64: return f(type_tag<int64_t>{});
    default: break;
  }
  MG_CHECK(false, op, ": expected float32, float64 or int64, got ", dtype_name(dtype));
}

}  // namespace

Tensor cuda_compare(CompareOp op, const Tensor& a, const Tensor& b, const Shape& shape) {
  Tensor out = Tensor::empty(shape, DType::Bool, a.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  cuda::DeviceGuard guard(a.device().index);
  Shape as = broadcast_strides(a.shape(), a.strides(), shape), bs = broadcast_strides(b.shape(), b.strides(), shape);
  Offsets<3> o = cuda::make_offsets<3>(shape, {&out.strides(), &as, &bs}, "compare");
  dispatch_comparable(a.dtype(), "compare", [&](auto tag) {
    using T = typename decltype(tag)::type;
    compare_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(op, out.data<bool>(), a.data<T>(), b.data<T>(), o, n);
  });
  cuda::check_launch("compare_kernel");
  return out;
}

Tensor cuda_compare_scalar(CompareOp op, const Tensor& a, double s) {
  Tensor out = Tensor::empty(a.shape(), DType::Bool, a.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  cuda::DeviceGuard guard(a.device().index);
  Offsets<2> o = cuda::make_offsets<2>(a.shape(), {&out.strides(), &a.strides()}, "compare");
  dispatch_comparable(a.dtype(), "compare", [&](auto tag) {
    using T = typename decltype(tag)::type;
    compare_scalar_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(op, out.data<bool>(), a.data<T>(), s, o, n);
  });
  cuda::check_launch("compare_scalar_kernel");
  return out;
}

Tensor cuda_masked_fill(const Tensor& x, const Tensor& mask, double value) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  cuda::DeviceGuard guard(x.device().index);
  Shape ms = broadcast_strides(mask.shape(), mask.strides(), x.shape());
  Offsets<3> o = cuda::make_offsets<3>(x.shape(), {&out.strides(), &x.strides(), &ms}, "masked_fill");
  dispatch_float(x.dtype(), "masked_fill", [&](auto tag) {
    using T = typename decltype(tag)::type;
    masked_fill_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(out.data<T>(), x.data<T>(), mask.data<bool>(),
                                                                 saturate_cast<T>(value), o, n);
  });
  cuda::check_launch("masked_fill_kernel");
  return out;
}

Tensor cuda_where(const Tensor& cond, const Tensor& a, const Tensor& b, const Shape& shape) {
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  cuda::DeviceGuard guard(a.device().index);
  Shape cs = broadcast_strides(cond.shape(), cond.strides(), shape);
  Shape as = broadcast_strides(a.shape(), a.strides(), shape), bs = broadcast_strides(b.shape(), b.strides(), shape);
  Offsets<4> o = cuda::make_offsets<4>(shape, {&out.strides(), &cs, &as, &bs}, "where");
  dispatch_float(a.dtype(), "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    where_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(out.data<T>(), cond.data<bool>(), a.data<T>(),
                                                           b.data<T>(), o, n);
  });
  cuda::check_launch("where_kernel");
  return out;
}

Tensor cuda_clamp(const Tensor& x, double low, double high) {
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  cuda::DeviceGuard guard(x.device().index);
  Offsets<2> o = cuda::make_offsets<2>(x.shape(), {&out.strides(), &x.strides()}, "clamp");
  dispatch_float(x.dtype(), "clamp", [&](auto tag) {
    using T = typename decltype(tag)::type;
    clamp_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(out.data<T>(), x.data<T>(), saturate_cast<T>(low),
                                                           saturate_cast<T>(high), o, n);
  });
  cuda::check_launch("clamp_kernel");
  return out;
}

Tensor cuda_clamp_backward(const Tensor& dout, const Tensor& x, double low, double high) {
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t n = dx.numel();
  if (n == 0) return dx;
  cuda::DeviceGuard guard(x.device().index);
  Shape ds = broadcast_strides(dout.shape(), dout.strides(), x.shape());
  Offsets<3> o = cuda::make_offsets<3>(x.shape(), {&dx.strides(), &ds, &x.strides()}, "clamp backward");
  dispatch_float(x.dtype(), "clamp backward", [&](auto tag) {
    using T = typename decltype(tag)::type;
    clamp_backward_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(dx.data<T>(), dout.data<T>(), x.data<T>(),
                                                                    saturate_cast<T>(low), saturate_cast<T>(high),
                                                                    o, n);
  });
  cuda::check_launch("clamp_backward_kernel");
  return dx;
}

}  // namespace moegrad
