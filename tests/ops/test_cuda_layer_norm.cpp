// layer_norm on CUDA tensors against the CPU: with and without weight and
// bias, rows of one warp, past one block and very long, many rows (the
// chunked dweight / dbias sums), empty inputs, non-contiguous input and
// weight, only some inputs requiring grad, forward and backward in float32
// and float64, run-to-run determinism, and the errors (mixed devices and
// dtypes, shapes, eps). Float64 gradchecks on the device: the op table,
// tests/ops/op_table.cpp.
// Tolerances: test_cuda_helpers.h (float64 1e-12 relative, float32 1e-5),
// except where dweight / dbias sum up to 100000 rows: float64 atol 1e-11
// there, since a column sum that cancels to near 0 keeps the rounding of all
// those terms, added in another order than the CPU's; the input offset by
// 1000: float64 atol 1e-10; and D = 1 (see the cases). A product that one side
// fuses into an FMA and the other rounds alone moves y or dx by at most half
// an ulp of a term (terms below 10 here) times rstd: rstd is below 1.7 for
// every input with D >= 5 (so under 2e-15, inside atol 1e-14), up to 274 for
// D = 3 in the many-rows case (under 2e-13, inside its 1e-11) and 316 for
// D = 1.
#include <array>

#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

// The inputs of one layer_norm call; weight or bias may be undefined.
struct Inputs {
  Tensor x, w, b;
};

Tensor leaf_copy(const Tensor& t, bool cuda, bool grad) {
  if (!t.defined()) return Tensor();
  Tensor c = (cuda ? on_cuda(t) : t).detach();
  if (grad) c.requires_grad_();
  return c;
}

// y, and the gradients of x, weight and bias (those in `grads`) for a random
// upstream gradient, on the device against the CPU.
void expect_matches_cpu(const Inputs& in, const std::string& what, std::array<bool, 3> grads = {true, true, true},
                        Tol tol = {0, 0}) {
  if (tol.rtol == 0) tol = tol_for(in.x.dtype());
  const std::string label = std::string(dtype_name(in.x.dtype())) + " " + what;
  Tensor g = uniform(in.x.shape(), in.x.dtype(), 99);
  Inputs c{leaf_copy(in.x, false, grads[0]), leaf_copy(in.w, false, grads[1]), leaf_copy(in.b, false, grads[2])};
  Inputs d{leaf_copy(in.x, true, grads[0]), leaf_copy(in.w, true, grads[1]), leaf_copy(in.b, true, grads[2])};
  Tensor yc = layer_norm(c.x, c.w, c.b), yd = layer_norm(d.x, d.w, d.b);
  ASSERT_TRUE(yd.device().is_cuda()) << label;
  expect_close(yd, yc, tol, label);
  if (!yc.requires_grad()) return;
  sum(mul(yc, g)).backward();
  sum(mul(yd, on_cuda(g))).backward();
  if (grads[0]) expect_close(d.x.grad(), c.x.grad(), tol, label + " dx");
  if (grads[1] && in.w.defined()) expect_close(d.w.grad(), c.w.grad(), tol, label + " dweight");
  if (grads[2] && in.b.defined()) expect_close(d.b.grad(), c.b.grad(), tol, label + " dbias");
}

Inputs make_inputs(const Shape& shape, DType dtype, bool weight, bool bias, uint64_t seed) {
  const int64_t D = shape.back();
  return {uniform(shape, dtype, seed), weight ? uniform({D}, dtype, seed + 1, 0.5, 1.5) : Tensor(),
          bias ? uniform({D}, dtype, seed + 2) : Tensor()};
}

}  // namespace

TEST(CudaLayerNorm, ShapesAndParamsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  // one element, a warp, past a warp, past one block, long rows, a 3-d input
  const std::vector<Shape> shapes = {{5, 1}, {4, 32}, {3, 33}, {2, 3, 16}, {4, 257}, {3, 5000}, {1, 70000}};
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const Shape& shape : shapes) {
      // D = 1: dx is exactly 0, computed as (dy*w - mean(dy*w)) * rstd with
      // rstd = 1/sqrt(eps) = 316. The device rounds dy*w by itself
      // (cuda::mul_rn) and gets 0; the host compiler may fuse dy*w - mean
      // into an FMA (GCC does by default where the target has FMA), leaving
      // up to half an ulp of dy*w (2.2e-16) times 316 = 7e-14 on the CPU.
      const Tol tol = shape.back() == 1 && dtype == DType::Float64 ? Tol{1e-12, 2e-13} : tol_for(dtype);
      for (bool weight : {true, false})
        for (bool bias : {true, false})
          expect_matches_cpu(make_inputs(shape, dtype, weight, bias, 1),
                             shape_str(shape) + (weight ? " weight" : "") + (bias ? " bias" : ""), {true, true, true},
                             tol);
    }
}

TEST(CudaLayerNorm, ManyRowsChunkedParamGrads) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const Tol tol = dtype == DType::Float64 ? Tol{1e-12, 1e-11} : tol_for(dtype);
    // one chunk, several, and the 1024-chunk cap; narrow and wide columns
    for (const Shape& shape : {Shape{63, 8}, Shape{1000, 33}, Shape{5000, 4}, Shape{100000, 3}, Shape{2048, 600}})
      expect_matches_cpu(make_inputs(shape, dtype, true, true, 2), shape_str(shape), {true, true, true}, tol);
  }
}

TEST(CudaLayerNorm, EdgeCasesAndLayouts) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    // no rows; rows of no elements
    expect_matches_cpu(make_inputs({0, 8}, dtype, true, true, 3), "no rows");
    expect_matches_cpu(make_inputs({3, 0}, dtype, true, true, 4), "empty rows");
    expect_matches_cpu(make_inputs({7}, dtype, true, true, 5), "1-d");
    // a transposed input and a strided weight
    Inputs t{transpose(uniform({6, 5}, dtype, 6), 0, 1), slice(uniform({12}, dtype, 7), 0, 0, 12, 2),
             uniform({6}, dtype, 8)};
    expect_matches_cpu(t, "transposed x, strided weight");
    // only some inputs require grad: dweight alone, dbias alone, dx alone
    Inputs p = make_inputs({40, 9}, dtype, true, true, 9);
    expect_matches_cpu(p, "dweight only", {false, true, false});
    expect_matches_cpu(p, "dbias only", {false, false, true});
    expect_matches_cpu(p, "dx only", {true, false, false});
    expect_matches_cpu(p, "no grad", {false, false, false});
    // large offsets: the variance is taken around the mean. In float64 the
    // mean of 300 values near 1000 carries the rounding of a sum near 3e5
    // (about 1e-12 here), added in another order than the CPU's, and x - mean
    // cancels 1000 down to about 1, so y, dx and dweight differ from the CPU
    // by up to ~1e-12 absolute (ratio ~90 against the default 1e-12 / 1e-14
    // under host emulation): atol 1e-10. float32 values sum exactly in double.
    Inputs big{add(uniform({4, 300}, dtype, 10), 1000.0), uniform({300}, dtype, 11), Tensor()};
    expect_matches_cpu(big, "offset 1000", {true, true, true},
                       dtype == DType::Float64 ? Tol{1e-12, 1e-10} : tol_for(dtype));
  }
}

TEST(CudaLayerNorm, Deterministic) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = on_cuda(uniform({20000, 64}, DType::Float32, 12)), w = on_cuda(uniform({64}, DType::Float32, 13));
  Tensor b = on_cuda(uniform({64}, DType::Float32, 14)), g = on_cuda(uniform({20000, 64}, DType::Float32, 15));
  x.requires_grad_();
  w.requires_grad_();
  b.requires_grad_();
  std::vector<std::vector<double>> first;
  for (int run = 0; run < 3; ++run) {
    x.zero_grad();
    w.zero_grad();
    b.zero_grad();
    Tensor y = layer_norm(x, w, b);
    sum(mul(y, g)).backward();
    std::vector<std::vector<double>> now = {y.to_vector(), x.grad().to_vector(), w.grad().to_vector(),
                                            b.grad().to_vector()};
    if (run == 0) first = now;
    else EXPECT_EQ(now, first) << "run " << run;
  }
}

TEST(CudaLayerNorm, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = Tensor::zeros({2, 3}), w = Tensor::ones({3}), b = Tensor::zeros({3});
  Tensor xd = on_cuda(x), wd = on_cuda(w), bd = on_cuda(b);
  EXPECT_MG_ERROR(layer_norm(xd, w, bd), "layer_norm: devices differ: cuda:0 vs cpu");
  EXPECT_MG_ERROR(layer_norm(xd, wd, b), "layer_norm: devices differ");
  EXPECT_MG_ERROR(layer_norm(x, wd, b), "layer_norm: devices differ: cpu vs cuda:0");
  EXPECT_MG_ERROR(layer_norm(xd, on_cuda(Tensor::ones({3}, DType::Float64)), bd), "layer_norm: dtypes differ");
  EXPECT_MG_ERROR(layer_norm(on_cuda(Tensor::zeros({2, 3}, DType::Int64)), Tensor(), Tensor()),
                  "layer_norm: input must be float32 or float64, got int64");
  EXPECT_MG_ERROR(layer_norm(xd, on_cuda(Tensor::ones({4})), bd), "layer_norm: weight must have shape [3]");
  EXPECT_MG_ERROR(layer_norm(on_cuda(Tensor::scalar(1.0)), Tensor(), Tensor()),
                  "layer_norm: input must have at least one");
  EXPECT_MG_ERROR(layer_norm(xd, wd, bd, 0.0), "layer_norm: eps must be positive and finite, got 0");
}
