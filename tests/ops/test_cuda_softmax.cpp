// softmax and log_softmax on CUDA tensors against the CPU: short rows (one
// warp), rows longer than one block, one very long row, more rows than one
// grid, empty tensors and a 0-d one, large inputs, NaN and -inf, forward and
// backward in float32 and float64, run-to-run determinism, and errors. Every
// dim of a 3-d tensor, transposed and strided inputs and the float64
// gradchecks on the device: the op table, tests/ops/op_table.cpp.
// Tolerances: test_cuda_helpers.h (float64 1e-12 relative, float32 1e-5).
// log_softmax's dx = dy - exp(y)·Σdy is a difference that may cancel; the
// device rounds the product by itself, the CPU may fuse it into an FMA. With
// inputs in [-2, 2] (or shifted together), exp(y) ≤ e^4 / n and |Σdy| ≤ 2n,
// so the product is below 110 and the two differ by at most 7e-15 < atol.
#include <cmath>

#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

using SoftmaxFn = Tensor (*)(const Tensor&, int64_t);
const std::pair<const char*, SoftmaxFn> kOps[] = {{"softmax", softmax}, {"log_softmax", log_softmax}};

// Checks op(x, dim) on the device against the CPU: the output, and the input
// gradient for the upstream gradient g (x's shape).
void expect_matches_cpu(const char* name, SoftmaxFn op, const Tensor& x, int64_t dim, const std::string& what) {
  const std::string label = std::string(name) + " " + what + " dim " + std::to_string(dim);
  Tensor g = uniform(x.shape(), x.dtype(), 99);
  Tensor xc = x.detach(), xd = on_cuda(x).detach();
  xc.requires_grad_();
  xd.requires_grad_();
  Tensor yc = op(xc, dim), yd = op(xd, dim);
  ASSERT_TRUE(yd.device().is_cuda()) << label;
  expect_close(yd, yc, label);
  sum(mul(yc, g)).backward();
  sum(mul(yd, on_cuda(g))).backward();
  expect_close(xd.grad(), xc.grad(), label + " grad");
}

}  // namespace

TEST(CudaSoftmax, RowLengthsAndEdgeCases) {
  MG_SKIP_WITHOUT_CUDA();
  // one element, a warp, just past a warp, one block, past one block, a very
  // long row; more rows than one grid (65535 blocks: the grid-stride loop over
  // rows) along dim -1
  const std::vector<Shape> shapes = {{5, 1},   {300, 7},  {3, 32},    {3, 33},
                                     {2, 256}, {4, 257}, {3, 1000}, {1, 70000}, {70000, 3}};
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const auto& [name, op] : kOps) {
      for (const Shape& shape : shapes) {
        expect_matches_cpu(name, op, uniform(shape, dtype, 4), -1, shape_str(shape));
        expect_matches_cpu(name, op, uniform(shape, dtype, 5), 0, shape_str(shape));
      }
      // empty tensors (no rows, empty rows), a 0-d tensor, a 1-d one
      for (const Shape& shape : {Shape{0, 4}, Shape{4, 0}, Shape{}, Shape{9}})
        expect_matches_cpu(name, op, uniform(shape, dtype, 6), -1, shape_str(shape));
    }
}

TEST(CudaSoftmax, LargeInputsNaNAndInfinity) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const auto& [name, op] : kOps)
      for (int64_t n : {5, 300}) {
        // values near 1000: exp overflows without the max subtraction
        Tensor big = add(uniform({3, n}, dtype, 7), 1000.0);
        Tensor y = op(on_cuda(big), 1);
        for (double v : y.to_vector()) ASSERT_TRUE(std::isfinite(v)) << name << " n " << n;
        expect_matches_cpu(name, op, big, 1, "large");
        // row 0 holds a NaN (the whole row is NaN, as on the CPU), row 1 some -inf
        std::vector<double> v = uniform({3, n}, DType::Float64, 8).to_vector();
        v[3] = NAN;
        v[n + 1] = -INFINITY, v[n + 4] = -INFINITY;
        Tensor special = Tensor::from_vector(v, {3, n}, dtype);
        expect_close(op(on_cuda(special), 1), op(special, 1), std::string(name) + " NaN/-inf n " + std::to_string(n));
      }
}

TEST(CudaSoftmax, Deterministic) {
  MG_SKIP_WITHOUT_CUDA();
  for (const auto& [name, op] : kOps) {
    Tensor x = on_cuda(uniform({7, 5000}, DType::Float32, 9));
    x.requires_grad_();
    Tensor g = on_cuda(uniform({7, 5000}, DType::Float32, 10));
    const std::vector<double> first = op(x, 1).to_vector();
    sum(mul(op(x, 1), g)).backward();
    const std::vector<double> grad = x.grad().to_vector();
    for (int run = 0; run < 3; ++run) {
      EXPECT_EQ(op(x, 1).to_vector(), first) << name;
      x.zero_grad();
      sum(mul(op(x, 1), g)).backward();
      EXPECT_EQ(x.grad().to_vector(), grad) << name;
    }
  }
}

TEST(CudaSoftmax, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor d = on_cuda(Tensor::ones({2, 3}));
  EXPECT_MG_ERROR(softmax(on_cuda(Tensor::ones({2, 3}, DType::Int64)), 1),
                  "softmax: input must be float32 or float64, got int64");
  EXPECT_MG_ERROR(log_softmax(d, 2), "log_softmax: dimension 2 out of range for a 2-d tensor");
  EXPECT_MG_ERROR(softmax(d, -3), "softmax: dimension -3 out of range");
}
