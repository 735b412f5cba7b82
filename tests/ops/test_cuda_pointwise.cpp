// The elementwise ops on CUDA tensors against the same ops on the CPU:
// binary ops on views of device tensors, abs and relu on both sides of their
// kink, add_, and the errors (mixed devices, layouts beyond 8 dims). Every
// binary and unary op and the scalar forms forward and backward (broadcast,
// strided, float32 and float64) and their float64 gradchecks on the device:
// the op table, tests/ops/op_table.cpp. Tolerances: test_cuda_helpers.h
// (float64 1e-12 relative, float32 1e-5).
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

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

TEST(CudaPointwise, KinksMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = Tensor::from_vector({-2, -0.5, 0, 0.5, 2}, {5}, DType::Float64);
  expect_close(abs(on_cuda(x)), abs(x), "abs");
  expect_close(relu(on_cuda(x)), relu(x), "relu");
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
