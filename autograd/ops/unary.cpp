// Pointwise unary ops. Each forward is one lambda over elements; each backward
// multiplies the upstream gradient by the local derivative, computed from the
// saved input x or output y (whichever is cheaper):
//   neg: -1            exp: y           log: 1/x          sqrt: 1/(2y)
//   pow: p x^(p-1), 0 for p = 0        abs: sign(x)     relu: [x > 0]
//   tanh: 1 - y²       sigmoid: y(1 - y)
//   gelu (erf):  Φ(x) + x φ(x)
//   gelu (tanh): 0.5(1 + t) + 0.5 x (1 - t²) √(2/π)(1 + 3·0.044715 x²),
//                t = tanh(√(2/π)(x + 0.044715 x³))
#include <cmath>

#include "autograd/ops/pointwise.h"

namespace moegrad {

namespace {

constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kInvSqrt2 = 0.7071067811865476;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
constexpr double kGeluC = 0.044715;

// y = fwd(x); dx = dout * grad(x, y). fwd and grad are generic lambdas.
template <typename Fwd, typename Grad>
Tensor unary(const Tensor& x, const char* op, Fwd fwd, Grad grad) {
  check_float(x, op);
  Tensor y = dispatch_float(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    return map_unary<T, T>(x, [&](T v) { return static_cast<T>(fwd(v)); });
  });
  Tensor xd = x.detach(), yd = y.detach();
  attach_backward(y, op, {x}, [xd, yd, op, grad](const Tensor& dout) {
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
  Tensor y = dispatch_float(x.dtype(), "neg", [&](auto tag) {
    using T = typename decltype(tag)::type;
    return map_unary<T, T>(x, [](T v) { return -v; });
  });
  attach_backward(y, "neg", {x}, [](const Tensor& dout) { return std::vector<Tensor>{neg(dout)}; });
  return y;
}

Tensor exp(const Tensor& x) {
  return unary(x, "exp", [](auto v) { return std::exp(v); }, [](auto, auto y) { return y; });
}

Tensor log(const Tensor& x) {
  return unary(x, "log", [](auto v) { return std::log(v); }, [](auto v, auto) { return 1 / v; });
}

Tensor sqrt(const Tensor& x) {
  return unary(x, "sqrt", [](auto v) { return std::sqrt(v); }, [](auto, auto y) { return 0.5 / y; });
}

Tensor pow(const Tensor& x, double p) {
  return unary(x, "pow", [p](auto v) { return std::pow(v, static_cast<decltype(v)>(p)); },
               // p = 0 is constant: its gradient is 0, also at x = 0 where x^(p-1) is inf
               [p](auto v, auto) { return p == 0 ? 0 : p * std::pow(v, static_cast<decltype(v)>(p - 1)); });
}

Tensor abs(const Tensor& x) {
  return unary(x, "abs", [](auto v) { return std::abs(v); },
               [](auto v, auto) { return v > 0 ? 1.0 : (v < 0 ? -1.0 : 0.0); });
}

Tensor relu(const Tensor& x) {
  return unary(x, "relu", [](auto v) { return v > 0 ? v : decltype(v)(0); },
               [](auto v, auto) { return v > 0 ? 1.0 : 0.0; });
}

Tensor tanh(const Tensor& x) {
  return unary(x, "tanh", [](auto v) { return std::tanh(v); }, [](auto, auto y) { return 1 - y * y; });
}

Tensor sigmoid(const Tensor& x) {
  return unary(x, "sigmoid", [](auto v) { return 1 / (1 + std::exp(-v)); },
               [](auto, auto y) { return y * (1 - y); });
}

Tensor gelu(const Tensor& x, GeluApprox approx) {
  if (approx == GeluApprox::Erf)
    return unary(
        x, "gelu", [](auto v) { return 0.5 * v * (1 + std::erf(v * kInvSqrt2)); },
        [](auto v, auto) { return 0.5 * (1 + std::erf(v * kInvSqrt2)) + v * kInvSqrt2Pi * std::exp(-0.5 * v * v); });
  return unary(
      x, "gelu",
      [](auto v) { return 0.5 * v * (1 + std::tanh(kSqrt2OverPi * (v + kGeluC * v * v * v))); },
      [](auto v, auto) {
        double t = std::tanh(kSqrt2OverPi * (v + kGeluC * v * v * v));
        return 0.5 * (1 + t) + 0.5 * v * (1 - t * t) * kSqrt2OverPi * (1 + 3 * kGeluC * v * v);
      });
}

}  // namespace moegrad
