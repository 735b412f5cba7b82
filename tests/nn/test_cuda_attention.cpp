// masked_softmax, elliptical_metric and MultiHeadAttention on CUDA tensors
// against the same ops on the CPU: softmax forward and backward, causal and
// not, rows longer than one block, non-contiguous and empty inputs, masked
// entries that would poison a row if read; the metric (bit for bit: the same
// double sums in the same order); the module on its three paths (fused,
// elliptical, dropout on the probabilities) forward and parameter gradients,
// and its gradcheck on the device; errors. fused_attention itself:
// test_cuda_fused_attention.cpp.
#include <cmath>

#include "nn/attention.h"
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

// x or, for odd variants, a view of the same values with the last two dims
// stored transposed (on the device when x is).
Tensor maybe_strided(const Tensor& x, int variant) {
  if (variant % 2 == 0 || x.dim() < 2) return x;
  return transpose(contiguous(transpose(x, -1, -2)), -1, -2);
}

void compare_softmax(const Tensor& x, bool causal, const std::string& what) {
  for (int variant = 0; variant < 2; ++variant) {
    Tensor h = maybe_strided(x, variant).detach().requires_grad_();
    Tensor d = maybe_strided(on_cuda(x), variant).detach().requires_grad_();
    Tensor yh = masked_softmax(h, causal), yd = masked_softmax(d, causal);
    EXPECT_EQ(yd.device(), Device::cuda(0));
    expect_close(yd, yh, what + " forward");
    Tensor w = uniform(x.shape(), x.dtype(), 21);
    yh.backward(w);
    yd.backward(maybe_strided(on_cuda(w), 1));
    expect_close(d.grad(), h.grad(), what + " backward");
  }
}

// A module and its copy on the device (same parameters, same dropout stream).
struct ModulePair {
  std::shared_ptr<MultiHeadAttention> cpu, cuda;
};

std::vector<Tensor*> params_of(MultiHeadAttention& a) {
  return {&a.qkv->weight, &a.qkv->bias, &a.proj->weight, &a.proj->bias};
}

ModulePair make_pair(int64_t dim, int64_t heads, bool causal, bool elliptical, DType dtype, double p = 0.0) {
  ModulePair m;
  for (auto* a : {&m.cpu, &m.cuda}) {
    Generator g(41);
    *a = std::make_shared<MultiHeadAttention>(dim, heads, causal, p, InitOptions{dtype, &g});
    (*a)->elliptical = elliptical;
  }
  m.cuda->to(Device::cuda(0));
  return m;
}

// Forward on both devices, then the gradient of Σ y ⊙ w + Σ values ⊙ u:
// compares y, values, dx and every parameter's gradient.
void compare_module(ModulePair& m, const Tensor& x, const Tensor& prev, const std::string& what) {
  const DType dtype = x.dtype();
  // float32: sums over dim and T of terms the CPU rounds in float (see
  // test_cuda_fused_attention.cpp); float64 gradients: sums of many products
  // that cancel near zero, ~1e-14 absolute.
  const Tol tol = dtype == DType::Float64 ? Tol{1e-12, 1e-13} : Tol{1e-5, 1e-5};
  Tensor xh = x.detach().requires_grad_(), xd = on_cuda(x).requires_grad_();
  AttentionOutput oh = m.cpu->forward(xh, prev), od = m.cuda->forward(xd, prev.defined() ? on_cuda(prev) : prev);
  EXPECT_EQ(od.y.device(), Device::cuda(0));
  expect_close(od.y, oh.y, tol, what + " y");
  expect_close(od.values, oh.values, tol, what + " values");
  Tensor w = uniform(oh.y.shape(), dtype, 42), u = uniform(oh.values.shape(), dtype, 43);
  add(sum(mul(oh.y, w)), sum(mul(oh.values, u))).backward();
  add(sum(mul(od.y, on_cuda(w))), sum(mul(od.values, on_cuda(u)))).backward();
  expect_close(xd.grad(), xh.grad(), tol, what + " dx");
  const char* names[] = {" qkv.weight", " qkv.bias", " proj.weight", " proj.bias"};
  std::vector<Tensor*> ph = params_of(*m.cpu), pd = params_of(*m.cuda);
  for (size_t i = 0; i < ph.size(); ++i) {
    ASSERT_TRUE(pd[i]->grad().defined()) << what << names[i];
    expect_close(pd[i]->grad(), ph[i]->grad(), tol, what + names[i]);
  }
}

}  // namespace

// ---- masked_softmax ----

TEST(CudaMaskedSoftmax, MatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  // rows of one entry, short rows, rows longer than one 256-thread block,
  // T < S, many rows, more rows than one grid (65535 blocks: the grid-stride
  // loop over rows)
  const std::vector<Shape> shapes = {{1, 1},     {2, 3, 4, 4},  {2, 3, 5},     {4, 1, 6},
                                     {2, 5, 700}, {300, 300}, {3, 40, 520}, {4400, 16, 20}};
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const Shape& shape : shapes)
      for (bool causal : {false, true}) {
        if (causal && shape.back() < shape[shape.size() - 2]) continue;
        compare_softmax(uniform(shape, dtype, 20, -3, 3), causal,
                        std::string(dtype_name(dtype)) + " " + shape_str(shape) + (causal ? " causal" : ""));
      }
  // S < T without the mask
  compare_softmax(uniform({6, 4}, DType::Float64, 22), false, "S < T");
}

TEST(CudaMaskedSoftmax, EmptyInputs) {
  MG_SKIP_WITHOUT_CUDA();
  for (const Shape& shape : {Shape{0, 4}, Shape{3, 0}, Shape{2, 0, 5}}) {
    Tensor d = on_cuda(Tensor::zeros(shape, DType::Float64)).requires_grad_();
    Tensor y = masked_softmax(d, false);
    EXPECT_EQ(y.shape(), shape);
    sum(y).backward();
    EXPECT_EQ(d.grad().shape(), shape);
  }
}

TEST(CudaMaskedSoftmax, MaskedEntriesNeverRead) {
  MG_SKIP_WITHOUT_CUDA();
  // T = 3, S = 5: row t keeps s <= t + 2; masked entries hold inf and NaN
  Tensor x = uniform({2, 3, 5}, DType::Float64, 23);
  Tensor poisoned = clone(x);
  double* p = poisoned.data<double>();
  for (int64_t r = 0; r < 6; ++r)
    for (int64_t s = r % 3 + 3; s < 5; ++s) p[r * 5 + s] = (s % 2) ? INFINITY : NAN;
  Tensor d = on_cuda(poisoned).requires_grad_();
  Tensor y = masked_softmax(d, true);
  expect_close(y, masked_softmax(x, true), "poisoned");
  Tensor w = uniform({2, 3, 5}, DType::Float64, 24);
  y.backward(on_cuda(w));
  Tensor h = x.detach().requires_grad_();
  masked_softmax(h, true).backward(w);
  expect_close(d.grad(), h.grad(), "poisoned backward");
}

TEST(CudaMaskedSoftmax, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  EXPECT_MG_ERROR(masked_softmax(on_cuda(Tensor::zeros({2, 2}, DType::Int64)), false),
                  "masked_softmax: scores must be float32 or float64");
  EXPECT_MG_ERROR(masked_softmax(on_cuda(Tensor::zeros({2, 4, 3})), true), "masked_softmax: a causal mask");
}

// ---- elliptical_metric ----

TEST(CudaEllipticalMetric, MatchesCpuExactly) {
  MG_SKIP_WITHOUT_CUDA();
  // The device adds the same |v - v_prev| in double in token order, divides by
  // the same max: equal bit for bit.
  const Tol exact{0, 0};
  const std::vector<Shape> shapes = {{2, 3, 5, 4}, {1, 1, 1, 1}, {2, 2, 300, 16}, {1, 2, 3, 300}};
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const Shape& shape : shapes)
      for (bool causal : {false, true})
        for (int variant = 0; variant < 2; ++variant) {
          Tensor v = uniform(shape, dtype, 30), prev = uniform(shape, dtype, 31);
          Tensor dv = maybe_strided(on_cuda(v), variant), dp = on_cuda(prev);
          Tensor m = elliptical_metric(dv, dp, causal);
          EXPECT_EQ(m.device(), Device::cuda(0));
          expect_close(m, elliptical_metric(v, prev, causal), exact,
                       std::string(dtype_name(dtype)) + " " + shape_str(shape) + (causal ? " causal" : "") +
                           (variant ? " strided" : ""));
        }
  // identical values: every max is 0, so m = 1
  Tensor v = on_cuda(uniform({2, 2, 4, 3}, DType::Float64, 32));
  expect_close(elliptical_metric(v, v, true), Tensor::ones({2, 2, 4, 3}, DType::Float64), exact, "zero difference");
  EXPECT_FALSE(elliptical_metric(v.detach().requires_grad_(), v, false).requires_grad());
}

TEST(CudaEllipticalMetric, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor v = on_cuda(Tensor::zeros({1, 2, 3, 2}, DType::Float64));
  EXPECT_MG_ERROR(elliptical_metric(v, v.to(Device::cpu())), "elliptical_metric: devices differ");
  EXPECT_MG_ERROR(elliptical_metric(v, on_cuda(Tensor::zeros({1, 2, 3, 2}))), "elliptical_metric: dtypes differ");
  EXPECT_MG_ERROR(elliptical_metric(v, on_cuda(Tensor::zeros({1, 2, 4, 2}, DType::Float64))),
                  "elliptical_metric: expected v_prev");
}

// ---- MultiHeadAttention ----

TEST(CudaMultiHeadAttention, FusedPathMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool causal : {false, true}) {
      ModulePair m = make_pair(12, 3, causal, false, dtype);
      compare_module(m, uniform({2, 21, 12}, dtype, 44, -1, 1), Tensor(),
                     std::string("fused ") + dtype_name(dtype) + (causal ? " causal" : ""));
    }
}

TEST(CudaMultiHeadAttention, EllipticalPathMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool causal : {false, true}) {
      ModulePair m = make_pair(8, 2, causal, true, dtype);
      compare_module(m, uniform({2, 19, 8}, dtype, 45, -1, 1), uniform({2, 2, 19, 4}, dtype, 46, -1, 1),
                     std::string("elliptical ") + dtype_name(dtype) + (causal ? " causal" : ""));
    }
}

TEST(CudaMultiHeadAttention, DropoutPathMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  // The CUDA dropout draws the CPU's mask from the same generator state, so
  // the two modules (built from one seed) drop the same probabilities.
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool elliptical : {false, true}) {
      ModulePair m = make_pair(8, 2, true, elliptical, dtype, 0.3);
      compare_module(m, uniform({2, 7, 8}, dtype, 47, -1, 1), uniform({2, 2, 7, 4}, dtype, 48, -1, 1),
                     std::string("dropout ") + dtype_name(dtype) + (elliptical ? " elliptical" : ""));
    }
}

TEST(CudaMultiHeadAttention, GradcheckOnDevice) {
  MG_SKIP_WITHOUT_CUDA();
  for (bool causal : {false, true}) {
    ModulePair m = make_pair(4, 2, causal, false, DType::Float64);
    std::shared_ptr<MultiHeadAttention> a = m.cuda;
    std::vector<Tensor> in{on_cuda(uniform({2, 3, 4}, DType::Float64, 49)).requires_grad_()};
    for (Tensor* p : params_of(*a)) in.push_back(*p);
    // the inputs are the parameters themselves, so perturbing them moves the module
    EXPECT_GRADCHECK([a](const std::vector<Tensor>& x) { return a->forward(x[0]).y; }, in);
  }
}

TEST(CudaMultiHeadAttention, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  ModulePair m = make_pair(4, 2, true, true, DType::Float64);
  Tensor x = Tensor::zeros({2, 3, 4}, DType::Float64);
  EXPECT_MG_ERROR(m.cuda->forward(x), "MultiHeadAttention: expected x of dtype float64 on cuda:0");
  EXPECT_MG_ERROR(m.cpu->forward(on_cuda(x)), "MultiHeadAttention: expected x of dtype float64 on cpu");
  EXPECT_MG_ERROR(m.cuda->forward(on_cuda(x), Tensor::zeros({2, 2, 3, 2}, DType::Float64)),
                  "MultiHeadAttention: expected prev_values [2, 2, 3, 2] of dtype float64 on cuda:0");
}
