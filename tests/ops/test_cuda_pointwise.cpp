// The elementwise ops on CUDA tensors against the same ops on the CPU:
// add/sub/mul/div with broadcasting and non-contiguous inputs, the scalar
// forms, every unary op forward and backward, add_, float64 gradchecks on the
// device, and the errors (mixed devices, layouts beyond 8 dims). Tolerances:
// test_cuda_helpers.h (float64 1e-12 relative, float32 1e-5).
#include <functional>

#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

using BinaryFn = std::function<Tensor(const Tensor&, const Tensor&)>;
using UnaryFn = std::function<Tensor(const Tensor&)>;

const std::vector<std::pair<const char*, BinaryFn>>& binaries() {
  static const std::vector<std::pair<const char*, BinaryFn>> all = {
      {"add", [](const Tensor& a, const Tensor& b) { return add(a, b); }},
      {"sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); }},
      {"mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); }},
      {"div", [](const Tensor& a, const Tensor& b) { return div(a, b); }},
  };
  return all;
}

struct UnaryCase {
  const char* name;
  UnaryFn op;
  double low, high;  // where the op is smooth
};

const std::vector<UnaryCase>& unaries() {
  static const std::vector<UnaryCase> all = {
      {"neg", [](const Tensor& x) { return neg(x); }, -2, 2},
      {"exp", [](const Tensor& x) { return exp(x); }, -2, 2},
      {"log", [](const Tensor& x) { return log(x); }, 0.1, 3},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, 0.1, 3},
      {"pow2.5", [](const Tensor& x) { return pow(x, 2.5); }, 0.1, 3},
      {"pow-1.5", [](const Tensor& x) { return pow(x, -1.5); }, 0.1, 3},
      {"pow0", [](const Tensor& x) { return pow(x, 0.0); }, 0.1, 3},
      {"abs", [](const Tensor& x) { return abs(x); }, 0.1, 2},
      {"relu", [](const Tensor& x) { return relu(x); }, 0.1, 2},
      {"tanh", [](const Tensor& x) { return tanh(x); }, -2, 2},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, -3, 3},
      {"gelu_tanh", [](const Tensor& x) { return gelu(x, GeluApprox::Tanh); }, -3, 3},
      {"gelu_erf", [](const Tensor& x) { return gelu(x, GeluApprox::Erf); }, -3, 3},
      {"add_scalar", [](const Tensor& x) { return add(x, 1.25); }, -2, 2},
      {"mul_scalar", [](const Tensor& x) { return mul(x, -0.75); }, -2, 2},
      {"rsub", [](const Tensor& x) { return rsub(3.0, x); }, -2, 2},
      {"rdiv", [](const Tensor& x) { return rdiv(2.0, x); }, 0.2, 2},
  };
  return all;
}

// Shape pairs that broadcast, with the second operand possibly transposed.
const std::vector<std::pair<Shape, Shape>>& broadcast_pairs() {
  static const std::vector<std::pair<Shape, Shape>> all = {
      {{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{3, 1}, {1, 4}}, {{2, 3, 4}, {3, 1}}, {{}, {2, 3}}, {{5}, {}},
      {{2, 1, 3, 1, 2}, {3, 4, 2}}, {{0, 3}, {3}}};
  return all;
}

// x or, for odd variants, a non-contiguous view with x's values
Tensor maybe_strided(const Tensor& x, int variant) {
  if (variant % 2 == 0 || x.dim() < 2) return x;
  return transpose(contiguous(transpose(x, 0, 1)), 0, 1);
}

}  // namespace

TEST(CudaPointwise, BinaryMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const auto& [name, op] : binaries())
      for (const auto& [sa, sb] : broadcast_pairs())
        for (int variant = 0; variant < 2; ++variant) {
          Tensor a = maybe_strided(uniform(sa, dtype, 1), variant);
          Tensor b = maybe_strided(uniform(sb, dtype, 2, 0.5, 2), variant);  // away from 0 for div
          Tensor got = op(on_cuda(a), on_cuda(b));
          EXPECT_EQ(got.device(), Device::cuda(0));
          expect_close(got, op(a, b),
                       std::string(name) + " " + dtype_name(dtype) + " " + shape_str(sa) + " " + shape_str(sb));
        }
}

TEST(CudaPointwise, BinaryOnDeviceViews) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor a = uniform({4, 6}, DType::Float64, 3), b = uniform({6, 4}, DType::Float64, 4);
  Tensor da = on_cuda(a), db = on_cuda(b);
  // transposed, sliced and expanded views of device tensors
  expect_close(add(da, transpose(db, 0, 1)), add(a, transpose(b, 0, 1)), "transposed");
  expect_close(mul(slice(da, 1, 0, 6, 2), narrow(transpose(db, 0, 1), 1, 1, 3)),
               mul(slice(a, 1, 0, 6, 2), narrow(transpose(b, 0, 1), 1, 1, 3)), "sliced");
  expect_close(sub(expand(narrow(da, 0, 0, 1), {4, 6}), da), sub(expand(narrow(a, 0, 0, 1), {4, 6}), a), "expanded");
}

TEST(CudaPointwise, UnaryForwardMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const UnaryCase& c : unaries())
      for (int variant = 0; variant < 2; ++variant) {
        Tensor x = maybe_strided(uniform({7, 9}, dtype, 5, c.low, c.high), variant);
        expect_close(c.op(on_cuda(x)), c.op(x), std::string(c.name) + " " + dtype_name(dtype));
      }
  // both signs where the op has a kink
  for (const char* name : {"abs", "relu"})
    for (const UnaryCase& c : unaries())
      if (std::string(c.name) == name) {
        Tensor x = Tensor::from_vector({-2, -0.5, 0, 0.5, 2}, {5}, DType::Float64);
        expect_close(c.op(on_cuda(x)), c.op(x), name);
      }
}

TEST(CudaPointwise, UnaryBackwardMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const UnaryCase& c : unaries()) {
      Tensor x = uniform({5, 8}, dtype, 6, c.low, c.high), g = uniform({5, 8}, dtype, 7);
      Tensor hx = x.detach().requires_grad_(), dx = on_cuda(x).requires_grad_();
      c.op(hx).backward(g);
      c.op(dx).backward(transpose(on_cuda(contiguous(transpose(g, 0, 1))), 0, 1));  // strided upstream gradient
      ASSERT_TRUE(dx.grad().defined()) << c.name;
      EXPECT_EQ(dx.grad().device(), Device::cuda(0));
      expect_close(dx.grad(), hx.grad(), std::string(c.name) + " backward " + dtype_name(dtype));
    }
}

TEST(CudaPointwise, BinaryBackwardMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (const auto& [name, op] : binaries())
    for (const auto& [sa, sb] : broadcast_pairs()) {
      Tensor a = uniform(sa, DType::Float64, 8), b = uniform(sb, DType::Float64, 9, 0.5, 2);
      Tensor ha = a.detach().requires_grad_(), hb = b.detach().requires_grad_();
      Tensor da = on_cuda(a).requires_grad_(), db = on_cuda(b).requires_grad_();
      Tensor hout = op(ha, hb);
      Tensor g = uniform(hout.shape(), DType::Float64, 10);
      hout.backward(g);
      op(da, db).backward(on_cuda(g));
      const std::string what = std::string(name) + " " + shape_str(sa) + " " + shape_str(sb);
      expect_close(da.grad(), ha.grad(), what + " da");
      expect_close(db.grad(), hb.grad(), what + " db");
    }
}

TEST(CudaPointwise, GradcheckOnDevice) {
  MG_SKIP_WITHOUT_CUDA();
  for (const UnaryCase& c : unaries()) {
    Tensor x = on_cuda(uniform({3, 4}, DType::Float64, 11, c.low, c.high)).requires_grad_();
    UnaryFn op = c.op;
    EXPECT_GRADCHECK([op](const std::vector<Tensor>& in) { return op(in[0]); }, {x});
  }
  for (const auto& [name, op] : binaries()) {
    Tensor a = on_cuda(uniform({2, 3, 4}, DType::Float64, 12)).requires_grad_();
    Tensor b = on_cuda(uniform({3, 1}, DType::Float64, 13, 0.5, 2)).requires_grad_();
    BinaryFn f = op;
    EXPECT_GRADCHECK([f](const std::vector<Tensor>& in) { return f(in[0], in[1]); }, {a, b});
  }
  // a composed graph: reused intermediates, a reduction, a non-contiguous input
  Tensor x = on_cuda(uniform({4, 3}, DType::Float64, 14)).requires_grad_();
  EXPECT_GRADCHECK(
      [](const std::vector<Tensor>& in) {
        Tensor t = transpose(in[0], 0, 1);
        Tensor h = tanh(t) * t + sigmoid(t);
        return sum(h * h, {1});
      },
      {x});
}

TEST(CudaPointwise, AccumulateInPlace) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    Tensor acc = uniform({3, 4}, dtype, 15), x = uniform({4}, dtype, 16);
    Tensor dacc = on_cuda(acc);
    add_(dacc, on_cuda(x), 0.5);
    add_(acc, x, 0.5);
    expect_close(dacc, acc, std::string("add_ ") + dtype_name(dtype));
    // an addend of another dtype is converted first, as on the CPU
    add_(dacc, on_cuda(x.to(DType::Float64)), -2.0);
    add_(acc, x.to(DType::Float64), -2.0);
    expect_close(dacc, acc, "add_ converted");
  }
  // gradients of a leaf used twice accumulate on the device
  Tensor w = on_cuda(uniform({5}, DType::Float64, 17)).requires_grad_();
  sum(add(mul(w, w), w)).backward();
  expect_close(w.grad(), add(mul(w.detach().to(Device::cpu()), 2.0), 1.0), "accumulated grad");
}

TEST(CudaPointwise, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor h = Tensor::ones({2, 3}, DType::Float32), d = on_cuda(h);
  EXPECT_MG_ERROR(add(h, d), "add: devices differ: cpu vs cuda:0");
  EXPECT_MG_ERROR(mul(d, h), "mul: devices differ");
  EXPECT_MG_ERROR(add_(d, h), "add_: devices differ");
  EXPECT_MG_ERROR(add(d, on_cuda(Tensor::ones({2, 3}, DType::Float64))), "add: dtypes differ");
  EXPECT_MG_ERROR(add(d, on_cuda(Tensor::ones({4}))), "do not broadcast");
  EXPECT_MG_ERROR(exp(on_cuda(Tensor::ones({2}, DType::Int64))), "exp: input must be float32 or float64");
  // a layout that no merging brings to 8 dims: a 9-d tensor with its dims reversed
  Tensor nine = on_cuda(Tensor::ones(Shape(9, 2)));
  std::vector<int64_t> rev(9);
  for (int64_t i = 0; i < 9; ++i) rev[i] = 8 - i;
  EXPECT_MG_ERROR(exp(permute(nine, rev)), "at most 8 dimensions");
  // ...while a contiguous 9-d tensor merges to one dim and works
  EXPECT_EQ(exp(nine).to_vector(), exp(Tensor::ones(Shape(9, 2))).to_vector());
}
