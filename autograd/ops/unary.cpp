// Pointwise unary ops. Each forward is one lambda over elements; each backward
// multiplies the upstream gradient by the local derivative, computed from the
// saved input x or output y (whichever is cheaper):
//   neg: -1            exp: y           log: 1/x          sqrt: 1/(2y)
//   pow: p x^(p-1), 0 for p = 0        abs: sign(x)     relu: [x > 0]
//   tanh: 1 - y²       sigmoid: y(1 - y)
//   gelu (erf):  Φ(x) + x φ(x)
//   gelu (tanh): 0.5(1 + t) + 0.5 x (1 - t²) √(2/π)(1 + 3·0.044715 x²),
//                t = tanh(√(2/π)(x + 0.044715 x³))
// Each op builds one node; the device picks the kernels. On CUDA the forward
// is one kernel and the backward one fused dx = dout · f'(x, y) kernel
// (cuda/pointwise.cu, the same formulas); GELU's tanh form recomputes t there
// instead of saving it.
#include <Eigen/Core>
#include <cmath>

#include "autograd/ops/pointwise.h"

namespace moegrad {

namespace {

// y = fwd(x); dx = dout * grad(x, y). fwd and grad are generic lambdas for
// the CPU; `code` (with the parameter p) names the same op for cuda/.
template <typename Fwd, typename Grad>
Tensor unary(const Tensor& x, const char* op, UnaryOp code, double p, Fwd fwd, Grad grad) {
  check_float(x, op);
  Tensor y = x.device().is_cuda() ? MOEGRAD_CUDA(cuda_unary(code, x, p))
                                  : dispatch_float(x.dtype(), op, [&](auto tag) {
                                      using T = typename decltype(tag)::type;
                                      return map_unary<T, T>(x, [&](T v) { return static_cast<T>(fwd(v)); });
                                    });
  Tensor xd = x.detach(), yd = y.detach();
  // [=]: a CPU-only build names code and p only in an unevaluated context.
  attach_backward(y, op, {x}, [=](const Tensor& dout) {
    if (xd.device().is_cuda()) return std::vector<Tensor>{MOEGRAD_CUDA(cuda_unary_backward(code, dout, xd, yd, p))};
    Tensor local = dispatch_float(xd.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      return map_binary<T, T, T>(xd, yd, op, [&](T xv, T yv) { return static_cast<T>(grad(xv, yv)); });
    });
    return std::vector<Tensor>{mul(dout, local)};
  });
  return y;
}

}  // namespace

Tensor neg(const Tensor& x) {
  check_float(x, "neg");
  Tensor y = x.device().is_cuda() ? MOEGRAD_CUDA(cuda_unary(UnaryOp::Neg, x))
                                  : dispatch_float(x.dtype(), "neg", [&](auto tag) {
                                      using T = typename decltype(tag)::type;
                                      return map_unary<T, T>(x, [](T v) { return -v; });
                                    });
  attach_backward(y, "neg", {x}, [](const Tensor& dout) { return std::vector<Tensor>{neg(dout)}; });
  return y;
}

Tensor exp(const Tensor& x) {
  return unary(x, "exp", UnaryOp::Exp, 0, [](auto v) { return std::exp(v); }, [](auto, auto y) { return y; });
}

Tensor log(const Tensor& x) {
  return unary(x, "log", UnaryOp::Log, 0, [](auto v) { return std::log(v); }, [](auto v, auto) { return 1 / v; });
}

Tensor sqrt(const Tensor& x) {
  return unary(x, "sqrt", UnaryOp::Sqrt, 0, [](auto v) { return std::sqrt(v); },
               [](auto, auto y) { return 0.5 / y; });
}

Tensor pow(const Tensor& x, double p) {
  return unary(x, "pow", UnaryOp::Pow, p, [p](auto v) { return std::pow(v, static_cast<decltype(v)>(p)); },
               // p = 0 is constant: its gradient is 0, also at x = 0 where x^(p-1) is inf
               [p](auto v, auto) { return p == 0 ? 0 : p * std::pow(v, static_cast<decltype(v)>(p - 1)); });
}

Tensor abs(const Tensor& x) {
  return unary(x, "abs", UnaryOp::Abs, 0, [](auto v) { return std::abs(v); },
               [](auto v, auto) { return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); });
}

Tensor relu(const Tensor& x) {
  return unary(x, "relu", UnaryOp::Relu, 0, [](auto v) { return v > 0 ? v : decltype(v)(0); },
               [](auto v, auto) { return v > 0 ? 1.0 : 0.0; });
}

Tensor tanh(const Tensor& x) {
  return unary(x, "tanh", UnaryOp::Tanh, 0, [](auto v) { return std::tanh(v); },
               [](auto, auto y) { return 1 - y * y; });
}

Tensor sigmoid(const Tensor& x) {
  return unary(x, "sigmoid", UnaryOp::Sigmoid, 0, [](auto v) { return 1 / (1 + std::exp(-v)); },
               [](auto, auto y) { return y * (1 - y); });
}

// GELU, tanh form: the hot activation of every FFN and expert, so it has its
// own kernel. Eigen's vectorised tanh computes t = tanh(√(2/π)(x + c x³)) once;
// the forward keeps t so that the backward needs no transcendental at all.
template <typename T>
static void gelu_tanh_kernel(const T* x, T* y, T* t, int64_t n) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  parallel_for(n, kParallelGrain / 4, [&](int64_t b, int64_t e) {
    Eigen::Map<const Array> xv(x + b, e - b);
    Eigen::Map<Array> tv(t + b, e - b), yv(y + b, e - b);
    tv = (T(kSqrt2OverPi) * (xv + T(kGeluC) * xv.cube())).tanh();
    yv = T(0.5) * xv * (T(1) + tv);
  });
}

template <typename T>
static void gelu_tanh_backward_kernel(const T* x, const T* t, const T* dy, T* dx, int64_t n) {
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  parallel_for(n, kParallelGrain / 4, [&](int64_t b, int64_t e) {
    Eigen::Map<const Array> xv(x + b, e - b), tv(t + b, e - b), g(dy + b, e - b);
    Eigen::Map<Array>(dx + b, e - b) =
        g * (T(0.5) * (T(1) + tv) +
             T(0.5 * kSqrt2OverPi) * xv * (T(1) - tv.square()) * (T(1) + T(3 * kGeluC) * xv.square()));
  });
}

Tensor gelu(const Tensor& x_in, GeluApprox approx) {
  if (approx == GeluApprox::Erf)
    return unary(
        x_in, "gelu", UnaryOp::GeluErf, 0, [](auto v) { return 0.5 * v * (1 + std::erf(v * kInvSqrt2)); },
        [](auto v, auto) { return 0.5 * (1 + std::erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * std::exp(-0.5 * v * v); });
  check_float(x_in, "gelu");
  Tensor x = contiguous(x_in).detach(), y, t;  // t: the CPU's saved tanh
  if (x.device().is_cuda()) {
    y = MOEGRAD_CUDA(cuda_unary(UnaryOp::GeluTanh, x));
  } else {
    y = Tensor::empty(x.shape(), x.dtype()), t = Tensor::empty(x.shape(), x.dtype());
    dispatch_float(x.dtype(), "gelu", [&](auto tag) {
      using T = typename decltype(tag)::type;
      gelu_tanh_kernel<T>(x.data<T>(), y.data<T>(), t.data<T>(), x.numel());
    });
  }
  attach_backward(y, "gelu", {x_in}, [x, y = y.detach(), t](const Tensor& dy_in) {
    if (x.device().is_cuda())
      return std::vector<Tensor>{MOEGRAD_CUDA(cuda_unary_backward(UnaryOp::GeluTanh, dy_in, x, y))};
    Tensor dy = contiguous(dy_in), dx = Tensor::empty(x.shape(), x.dtype());
    dispatch_float(x.dtype(), "gelu backward", [&](auto tag) {
      using T = typename decltype(tag)::type;
      gelu_tanh_backward_kernel<T>(x.data<T>(), t.data<T>(), dy.data<T>(), dx.data<T>(), x.numel());
    });
    return std::vector<Tensor>{dx};
  });
  return y;
}

}  // namespace moegrad
