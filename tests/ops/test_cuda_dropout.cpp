// dropout on CUDA tensors: for the same Generator state the device mask
// equals the CPU mask bit for bit (both draw random_uniform(seed, first + i)
// for element i in row-major order), the Generator advances by numel on both,
// strided inputs, p = 0 and p = 1, eval mode, the backward and the errors
// (the float64 gradcheck on the device: the op table, tests/ops/op_table.cpp).
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {


void expect_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  EXPECT_EQ(got.device(), Device::cuda(0)) << what;
  expect_close(got, want, Tol{0, 0}, what);
}

}  // namespace

TEST(CudaDropout, MaskEqualsCpuMask) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (double p : {0.1, 0.5, 0.9, 1.0})
      for (const Shape& shape : {Shape{7, 9}, Shape{1000, 33}, Shape{5}, Shape{0, 4}}) {
        Tensor x = uniform(shape, dtype, 1);
        Generator gh(42), gd(42);
        gh.take(123), gd.take(123);  // a state past the start
        const std::string what = std::string(dtype_name(dtype)) + " p " + std::to_string(p) + " " + shape_str(shape);
        expect_equal(dropout(on_cuda_like(x), p, true, &gd), dropout(x, p, true, &gh), what);
        EXPECT_EQ(gd.offset(), gh.offset()) << what;
        EXPECT_EQ(gd.offset(), 123u + static_cast<uint64_t>(x.numel())) << what;
        // the next call continues the stream on both
        expect_equal(dropout(on_cuda_like(x), p, true, &gd), dropout(x, p, true, &gh), what + " second call");
      }
}

TEST(CudaDropout, StridedInputAndDefaultGenerator) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = uniform({40, 30}, DType::Float64, 2);
  Tensor xt = transpose(on_cuda_like(contiguous(transpose(x, 0, 1))), 0, 1);  // x's values, strided on the device
  Generator gh(3), gd(3);
  expect_equal(dropout(xt, 0.3, true, &gd), dropout(x, 0.3, true, &gh), "strided");
  manual_seed(9);
  Tensor drawn = dropout(on_cuda_like(x), 0.3, true);
  manual_seed(9);
  expect_equal(drawn, dropout(x, 0.3, true), "default generator");
}

TEST(CudaDropout, IdentityAndBackward) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor d = on_cuda_like(uniform({4, 5}, DType::Float32, 4));
  Generator g(5);
  EXPECT_TRUE(dropout(d, 0.5, false, &g).same(d));  // eval mode
  EXPECT_TRUE(dropout(d, 0.0, true, &g).same(d));   // p = 0
  EXPECT_EQ(g.offset(), 0u);
  for (DType dtype : {DType::Float64, DType::Float32}) {
    Tensor x = uniform({6, 7}, dtype, 6), up = uniform({6, 7}, dtype, 7);
    Tensor hx = x.detach().requires_grad_(), dx = on_cuda(x).requires_grad_();
    Generator gh(8), gd(8);
    dropout(hx, 0.4, true, &gh).backward(up);
    dropout(dx, 0.4, true, &gd).backward(on_cuda_like(up));
    expect_equal(dx.grad(), hx.grad(), std::string("backward ") + dtype_name(dtype));
  }
}

TEST(CudaDropout, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  EXPECT_MG_ERROR(dropout(on_cuda_like(Tensor::ones({2}, DType::Int64)), 0.5, true), "dropout: input must be float32");
  EXPECT_MG_ERROR(dropout(on_cuda_like(Tensor::ones({2})), 1.5, true), "dropout: probability p must be in [0, 1]");
}
