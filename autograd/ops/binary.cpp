// add, sub, mul, div with NumPy broadcasting, their scalar forms, and the
// unrecorded in-place accumulate add_. Backward: the upstream gradient times
// the local derivative, summed back down to each input's shape (sum_to).
// The device picks the forward kernel (cuda/pointwise.cu on CUDA); the
// backward is built from other ops, so it runs on either.
#include "autograd/ops/pointwise.h"

namespace moegrad {

namespace {

const char* binary_name(BinaryOp op) {
  switch (op) {
    case BinaryOp::Add: return "add";
    case BinaryOp::Sub: return "sub";
    case BinaryOp::Mul: return "mul";
    case BinaryOp::Div: return "div";
  }
  return "?";
}

Tensor binary_forward(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  check_float(a, name, "first input");
  check_float(b, name, "second input");
  check_same_type(a, b, name);
  if (a.device().is_cuda()) return MOEGRAD_CUDA(cuda_binary(op, a, b, broadcast_shapes(a.shape(), b.shape(), name)));
  return dispatch_float(a.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (op) {
      case BinaryOp::Add: return map_binary<T, T, T>(a, b, name, [](T x, T y) { return x + y; });
      case BinaryOp::Sub: return map_binary<T, T, T>(a, b, name, [](T x, T y) { return x - y; });
      case BinaryOp::Mul: return map_binary<T, T, T>(a, b, name, [](T x, T y) { return x * y; });
      case BinaryOp::Div: return map_binary<T, T, T>(a, b, name, [](T x, T y) { return x / y; });
    }
    return Tensor();
  });
}

struct BinaryBackward : Node {
  BinaryOp op;
  Tensor a, b, out;  // saved as needed: mul needs a and b, div needs b and out
  const char* name() const override { return binary_name(op); }
  std::vector<Tensor> backward(const Tensor& dout) override {
    Tensor da, db;
    const bool need_a = inputs[0].active(), need_b = inputs[1].active();
    switch (op) {
      case BinaryOp::Add:
        if (need_a) da = dout;
        if (need_b) db = dout;
        break;
      case BinaryOp::Sub:
        if (need_a) da = dout;
        if (need_b) db = neg(dout);
        break;
      case BinaryOp::Mul:
        if (need_a) da = mul(dout, b);
        if (need_b) db = mul(dout, a);
        break;
      case BinaryOp::Div:
        if (need_a) da = div(dout, b);
        if (need_b) db = neg(div(mul(dout, out), b));  // d(a/b)/db = -a/b^2 = -out/b
        break;
    }
    if (da.defined()) da = sum_to(da, inputs[0].shape);
    if (db.defined()) db = sum_to(db, inputs[1].shape);
    return {da, db};
  }
  void release() override { a = b = out = Tensor(); }
};

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  Tensor out = binary_forward(op, a, b);
  if (any_requires_grad({a, b})) {
    auto node = std::make_shared<BinaryBackward>();
    node->op = op;
    if (op == BinaryOp::Mul) node->a = a.detach();
    if (op == BinaryOp::Mul || op == BinaryOp::Div) node->b = b.detach();
    if (op == BinaryOp::Div) node->out = out.detach();
    attach_node(out, node, {a, b});
  }
  return out;
}

// y = alpha * x + beta (add / mul by a scalar: UnaryOp::Affine) or
// y = alpha / x (rdiv: UnaryOp::Reciprocal).
struct ScalarBackward : Node {
  UnaryOp op;
  double alpha;
  Tensor x, out;
  const char* name() const override { return op == UnaryOp::Affine ? "scalar affine" : "rdiv"; }
  std::vector<Tensor> backward(const Tensor& dout) override {
    if (op == UnaryOp::Affine) return {alpha == 1.0 ? dout : mul(dout, alpha)};
    return {neg(div(mul(dout, out), x))};  // d(alpha/x)/dx = -alpha/x^2 = -out/x
  }
  void release() override { x = out = Tensor(); }
};

Tensor scalar_forward(UnaryOp op, const Tensor& x, double alpha, double beta, const char* name) {
  if (x.device().is_cuda()) return MOEGRAD_CUDA(cuda_unary(op, x, alpha, beta));
  return dispatch_float(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T a = static_cast<T>(alpha), c = static_cast<T>(beta);
    if (op == UnaryOp::Affine) return map_unary<T, T>(x, [=](T v) { return a * v + c; });
    return map_unary<T, T>(x, [=](T v) { return a / v; });
  });
}

Tensor scalar_op(UnaryOp op, const Tensor& x, double alpha, double beta, const char* name) {
  check_float(x, name);
  Tensor out = scalar_forward(op, x, alpha, beta, name);
  if (any_requires_grad({x})) {
    auto node = std::make_shared<ScalarBackward>();
    node->op = op;
    node->alpha = alpha;
    if (op == UnaryOp::Reciprocal) node->x = x.detach(), node->out = out.detach();
    attach_node(out, node, {x});
  }
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Add, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Sub, a, b); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Mul, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return binary(BinaryOp::Div, a, b); }

Tensor add(const Tensor& a, double b) { return scalar_op(UnaryOp::Affine, a, 1.0, b, "add"); }
Tensor mul(const Tensor& a, double b) { return scalar_op(UnaryOp::Affine, a, b, 0.0, "mul"); }
Tensor rsub(double a, const Tensor& b) { return scalar_op(UnaryOp::Affine, b, -1.0, a, "rsub"); }
Tensor rdiv(double a, const Tensor& b) { return scalar_op(UnaryOp::Reciprocal, b, a, 0.0, "rdiv"); }

void add_(const Tensor& acc, const Tensor& x, double alpha) {
  check_float(acc, "add_", "accumulator");
  check_float(x, "add_", "addend");
  MG_CHECK(acc.device() == x.device(), "add_: devices differ: accumulator on ", acc.device().str(), ", addend on ",
           x.device().str());
  MG_CHECK(broadcast_shapes(acc.shape(), x.shape(), "add_") == acc.shape(), "add_: addend of shape ",
           shape_str(x.shape()), " does not broadcast to the accumulator's shape ", shape_str(acc.shape()));
  const int64_t shared = expanded_dim(acc);
  MG_CHECK(shared < 0, "add_: the accumulator ", shape_str(acc.shape()), " is an expanded view (stride 0 on dimension ",
           shared, "): its elements share memory");
  Tensor xs = x.dtype() == acc.dtype() ? x : x.to(acc.dtype());
  // an addend in the accumulator's memory, laid out otherwise (acc += accᵀ), is read whole before any write
  if (xs.storage() == acc.storage() && !(xs.raw_data() == acc.raw_data() && xs.shape() == acc.shape() &&
                                         xs.strides() == acc.strides())) {
    Tensor staged = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
    staged.copy_(xs);
    xs = staged;
  }
  if (acc.device().is_cuda()) return MOEGRAD_CUDA(cuda_add_(acc, xs, alpha));
  dispatch_float(acc.dtype(), "add_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* o = acc.data<T>();
    const T* xp = xs.data<T>();
    const T al = static_cast<T>(alpha);
    if (acc.is_contiguous() && xs.is_contiguous() && xs.shape() == acc.shape()) {
      parallel_for(acc.numel(), kParallelGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) o[i] += al * xp[i];
      });
      return;
    }
    Shape xstr = broadcast_strides(xs.shape(), xs.strides(), acc.shape());
    strided_rows<2>(acc.shape(), {&acc.strides(), &xstr},
                    [&](const std::array<int64_t, 2>& off, int64_t n, const std::array<int64_t, 2>& st) {
                      for (int64_t i = 0; i < n; ++i) o[off[0] + i * st[0]] += al * xp[off[1] + i * st[1]];
                    });
  });
}

}  // namespace moegrad
