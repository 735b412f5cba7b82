// The elementwise kernels of pointwise.h: one kernel per family and dtype
// with the op chosen by a switch (uniform across a launch, so it costs no
// divergence), grid-stride loops over int64 indices, strided operands through
// Offsets. Each op computes in the precision its CPU twin in unary.cpp uses
// (GELU erf in double, sqrt's and pow's derivative rounded from double), so
// float64 results agree with the CPU to a few ulp.
#include <cmath>

#include "cuda/launch.cuh"
#include "cuda/pointwise.h"
#include "tensor/strided.h"

namespace moegrad {

namespace {

using cuda::Offsets;

template <typename T>
__device__ T binary_fn(BinaryOp op, T a, T b) {
  switch (op) {
    case BinaryOp::Add: return a + b;
    case BinaryOp::Sub: return a - b;
    case BinaryOp::Mul: return a * b;
    case BinaryOp::Div: return a / b;
  }
  return a;
}

template <typename T>
__device__ T gelu_tanh_t(T x) {
  return tanh(T(kSqrt2OverPi) * (x + T(kGeluC) * (x * x * x)));
}

template <typename T>
__device__ T unary_fn(UnaryOp op, T v, double p, double q) {
  switch (op) {
    case UnaryOp::Neg: return -v;
    case UnaryOp::Exp: return exp(v);
    case UnaryOp::Log: return log(v);
    case UnaryOp::Sqrt: return sqrt(v);
    case UnaryOp::Pow: return pow(v, T(p));
    case UnaryOp::Abs: return fabs(v);
    case UnaryOp::Relu: return v > T(0) ? v : T(0);
    case UnaryOp::Tanh: return tanh(v);
    case UnaryOp::Sigmoid: return T(1) / (T(1) + exp(-v));
    case UnaryOp::GeluErf: {
      const double x = v;
      return T(0.5 * x * (1 + erf(x * kInvSqrt2)));
    }
    case UnaryOp::GeluTanh: return T(0.5) * v * (T(1) + gelu_tanh_t(v));
    case UnaryOp::Affine: return T(p) * v + T(q);
    case UnaryOp::Reciprocal: return T(p) / v;
  }
  return v;
}

// f'(x), given y = f(x).
template <typename T>
__device__ T unary_grad(UnaryOp op, T x, T y, double p) {
  switch (op) {
    case UnaryOp::Neg: return T(-1);
    case UnaryOp::Exp: return y;
    case UnaryOp::Log: return T(1) / x;
    case UnaryOp::Sqrt: return T(0.5 / double(y));
    case UnaryOp::Pow: return p == 0 ? T(0) : T(p * double(pow(x, T(p - 1))));
    case UnaryOp::Abs: return x > T(0) ? T(1) : (x < T(0) ? T(-1) : T(0));
    case UnaryOp::Relu: return x > T(0) ? T(1) : T(0);
    case UnaryOp::Tanh: return T(1) - y * y;
    case UnaryOp::Sigmoid: return y * (T(1) - y);
    case UnaryOp::GeluErf: {
      const double v = x;
      return T(0.5 * (1 + erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * exp(-0.5 * v * v));
    }
    case UnaryOp::GeluTanh: {
      const T t = gelu_tanh_t(x);
      return T(0.5) * (T(1) + t) + T(0.5 * kSqrt2OverPi) * x * (T(1) - t * t) * (T(1) + T(3 * kGeluC) * x * x);
    }
    case UnaryOp::Affine:
    case UnaryOp::Reciprocal: break;  // refused on the host
  }
  return T(0);
}

template <typename T>
__global__ void binary_kernel(BinaryOp op, T* out, const T* a, const T* b, Offsets<3> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[3];
    o.at(i, off);
    out[off[0]] = binary_fn(op, a[off[1]], b[off[2]]);
  }
}

template <typename T>
__global__ void unary_kernel(UnaryOp op, double p, double q, T* out, const T* x, Offsets<2> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[2];
    o.at(i, off);
    out[off[0]] = unary_fn(op, x[off[1]], p, q);
  }
}

template <typename T>
__global__ void unary_backward_kernel(UnaryOp op, double p, T* dx, const T* dy, const T* x, const T* y,
                                      Offsets<4> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[4];
    o.at(i, off);
    dx[off[0]] = dy[off[1]] * unary_grad(op, x[off[2]], y[off[3]], p);
  }
}

template <typename T>
__global__ void add_kernel(T* acc, const T* x, T alpha, Offsets<2> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[2];
    o.at(i, off);
    acc[off[0]] += alpha * x[off[1]];
  }
}

// Error naming op unless every tensor is on `device` with `dtype`.
void check_operands(const char* op, std::initializer_list<const Tensor*> ts, Device device, DType dtype) {
  for (const Tensor* t : ts) {
    MG_CHECK(t->device() == device, op, ": devices differ: ", t->device().str(), " vs ", device.str());
    MG_CHECK(t->dtype() == dtype, op, ": dtypes differ: ", dtype_name(t->dtype()), " vs ", dtype_name(dtype));
  }
}

}  // namespace

Tensor cuda_binary(BinaryOp op, const Tensor& a, const Tensor& b, const Shape& shape) {
  const char* name = "cuda_binary";
  check_operands(name, {&b}, a.device(), a.dtype());
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  cuda::DeviceGuard guard(a.device().index);
  Shape as = broadcast_strides(a.shape(), a.strides(), shape), bs = broadcast_strides(b.shape(), b.strides(), shape);
  Offsets<3> o = cuda::make_offsets<3>(shape, {&out.strides(), &as, &bs}, name);
  dispatch_float(a.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    binary_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(op, out.data<T>(), a.data<T>(), b.data<T>(), o, n);
  });
  cuda::check_launch("binary_kernel");
  return out;
}

Tensor cuda_unary(UnaryOp op, const Tensor& x, double p, double q) {
  const char* name = "cuda_unary";
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t n = out.numel();
  if (n == 0) return out;
  cuda::DeviceGuard guard(x.device().index);
  Offsets<2> o = cuda::make_offsets<2>(x.shape(), {&out.strides(), &x.strides()}, name);
  dispatch_float(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(op, p, q, out.data<T>(), x.data<T>(), o, n);
  });
  cuda::check_launch("unary_kernel");
  return out;
}

Tensor cuda_unary_backward(UnaryOp op, const Tensor& dy, const Tensor& x, const Tensor& y, double p) {
  const char* name = "cuda_unary_backward";
  MG_CHECK(op != UnaryOp::Affine && op != UnaryOp::Reciprocal, name,
           ": Affine and Reciprocal have no fused backward");
  check_operands(name, {&dy, &y}, x.device(), x.dtype());
  MG_CHECK(y.shape() == x.shape(), name, ": output of shape ", shape_str(y.shape()), " for an input of shape ",
           shape_str(x.shape()));
  Tensor dx = Tensor::empty(x.shape(), x.dtype(), x.device());
  const int64_t n = dx.numel();
  if (n == 0) return dx;
  cuda::DeviceGuard guard(x.device().index);
  Shape ds = broadcast_strides(dy.shape(), dy.strides(), x.shape());
  Offsets<4> o = cuda::make_offsets<4>(x.shape(), {&dx.strides(), &ds, &x.strides(), &y.strides()}, name);
  dispatch_float(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    unary_backward_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(op, p, dx.data<T>(), dy.data<T>(), x.data<T>(),
                                                                    y.data<T>(), o, n);
  });
  cuda::check_launch("unary_backward_kernel");
  return dx;
}

void cuda_add_(const Tensor& acc, const Tensor& x, double alpha) {
  const char* name = "add_";
  check_operands(name, {&x}, acc.device(), acc.dtype());
  const int64_t n = acc.numel();
  if (n == 0) return;
  cuda::DeviceGuard guard(acc.device().index);
  Shape xs = broadcast_strides(x.shape(), x.strides(), acc.shape());
  Offsets<2> o = cuda::make_offsets<2>(acc.shape(), {&acc.strides(), &xs}, name);
  dispatch_float(acc.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    add_kernel<T><<<cuda::grid_for(n), cuda::kThreads>>>(acc.data<T>(), x.data<T>(), T(alpha), o, n);
  });
  cuda::check_launch("add_kernel");
}

}  // namespace moegrad
