// Comparisons and selection on CUDA tensors against the same ops on the CPU:
// eq/ne/lt/le/gt/ge (tensor forms with broadcasting, the scalar forms) on
// float32, float64 and int64 with ties and NaN; masked_fill, where and clamp
// forward and backward with broadcasting and strided inputs; errors (mixed devices, wrong dtypes). Every
// kernel computes each element alone with the CPU's arithmetic, so results
// must be exactly equal. Float64 gradchecks on the device: the op table,
// tests/ops/op_table.cpp.
#include <limits>

#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

using CompareFn = Tensor (*)(const Tensor&, const Tensor&);
const std::vector<std::pair<const char*, CompareFn>>& compares() {
  static const std::vector<std::pair<const char*, CompareFn>> all = {
      {"eq", eq}, {"ne", ne}, {"lt", lt}, {"le", le}, {"gt", gt}, {"ge", ge}};
  return all;
}

// Values in {-2, ..., 2} (many ties) of dtype, with a NaN for floats.
Tensor small_values(const Shape& shape, DType dtype, uint64_t seed) {
  std::vector<double> v = uniform(shape, DType::Float64, seed, -2, 3).to_vector();
  for (double& x : v) x = std::floor(x);
  if (is_floating(dtype) && !v.empty()) v[v.size() / 2] = std::numeric_limits<double>::quiet_NaN();
  return Tensor::from_vector(v, shape, dtype);
}

Tensor maybe_strided(const Tensor& x, bool strided) {
  if (!strided || x.dim() < 2) return x;
  return transpose(contiguous(transpose(x, 0, 1)), 0, 1);
}

// x's values on the device in x's kind of layout (strided there when x is).
Tensor dev(const Tensor& x) { return maybe_strided(on_cuda(x), !x.is_contiguous()); }

void expect_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  EXPECT_EQ(got.device(), Device::cuda(0)) << what;
  expect_close(got, want, Tol{0, 0}, what);
}

// A bool mask of shape, seeded.
Tensor random_mask(const Shape& shape, uint64_t seed) { return gt(uniform(shape, DType::Float64, seed), 0.0); }

}  // namespace

TEST(CudaSelect, ComparisonsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  const std::vector<std::pair<Shape, Shape>> shapes = {{{3, 4}, {3, 4}}, {{3, 4}, {4}}, {{3, 1}, {1, 4}},
                                                       {{}, {2, 3}},     {{0, 3}, {3}}};
  for (DType dtype : {DType::Float64, DType::Float32, DType::Int64})
    for (const auto& [name, op] : compares())
      for (const auto& [sa, sb] : shapes)
        for (bool strided : {false, true}) {
          Tensor a = maybe_strided(small_values(sa, dtype, 1), strided);
          Tensor b = maybe_strided(small_values(sb, dtype, 2), strided);
          Tensor got = op(dev(a), dev(b));
          EXPECT_EQ(got.dtype(), DType::Bool);
          expect_equal(got, op(a, b), std::string(name) + " " + dtype_name(dtype) + " " + shape_str(sa));
        }
}

TEST(CudaSelect, ScalarComparisonsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  using ScalarFn = Tensor (*)(const Tensor&, double);
  const std::vector<std::pair<const char*, ScalarFn>> ops = {{"eq", eq}, {"lt", lt}, {"gt", gt}};
  for (DType dtype : {DType::Float64, DType::Float32, DType::Int64})
    for (const auto& [name, op] : ops)
      for (double s : {0.0, 1.0, 0.1, -1.5}) {  // 0.1 is not a float32: eq(x, 0.1) is false everywhere
        Tensor a = maybe_strided(small_values({5, 6}, dtype, 3), true);
        expect_equal(op(dev(a), s), op(a, s), std::string(name) + " " + dtype_name(dtype));
      }
  Tensor tenth = Tensor::full({3}, 0.1, DType::Float32);
  expect_equal(eq(dev(tenth), 0.1), eq(tenth, 0.1), "float32 0.1 vs double 0.1");
  // comparisons cut the graph
  EXPECT_FALSE(gt(on_cuda(uniform({3}, DType::Float64, 4)).requires_grad_(), 0.0).requires_grad());
}

TEST(CudaSelect, MaskedFillMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool strided : {false, true})
      for (const Shape& ms : {Shape{4, 5}, Shape{5}, Shape{4, 1}, Shape{}}) {
        Tensor x = maybe_strided(uniform({4, 5}, dtype, 5), strided);
        Tensor m = maybe_strided(random_mask(ms, 6), strided);
        const std::string what = std::string(dtype_name(dtype)) + " mask " + shape_str(ms);
        for (double v : {-1e9, 0.0, -std::numeric_limits<double>::infinity(), 1e300})  // 1e300 saturates in float32
          expect_equal(masked_fill(dev(x), dev(m), v), masked_fill(x, m, v), what);
        Tensor hx = x.detach().requires_grad_(), dx = on_cuda(x).requires_grad_();
        Tensor g = uniform({4, 5}, dtype, 7);
        masked_fill(hx, m, 3.0).backward(g);
        masked_fill(dx, dev(m), 3.0).backward(dev(g));
        expect_equal(dx.grad(), hx.grad(), what + " backward");
      }
}

TEST(CudaSelect, WhereMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  struct Case {
    Shape c, a, b;
  };
  const std::vector<Case> cases = {{{3, 4}, {3, 4}, {3, 4}}, {{3, 4}, {4}, {3, 1}}, {{1, 4}, {3, 4}, {}},
                                   {{2, 3, 4}, {3, 4}, {2, 1, 4}}, {{0, 4}, {4}, {4}}};
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const Case& k : cases)
      for (bool strided : {false, true}) {
        Tensor c = maybe_strided(random_mask(k.c, 8), strided);
        Tensor a = maybe_strided(uniform(k.a, dtype, 9), strided), b = maybe_strided(uniform(k.b, dtype, 10), strided);
        const std::string what =
            std::string(dtype_name(dtype)) + " " + shape_str(k.c) + shape_str(k.a) + shape_str(k.b);
        expect_equal(where(dev(c), dev(a), dev(b)), where(c, a, b), what);
        Tensor ha = a.detach().requires_grad_(), hb = b.detach().requires_grad_();
        Tensor da = on_cuda(a).requires_grad_(), db = on_cuda(b).requires_grad_();
        Tensor hout = where(c, ha, hb);
        Tensor g = uniform(hout.shape(), dtype, 11);
        hout.backward(g);
        where(dev(c), da, db).backward(dev(g));
        // the gradients are sums over broadcast dims (cuda/reduce: another order than the CPU)
        expect_close(da.grad(), ha.grad(), what + " da");
        expect_close(db.grad(), hb.grad(), what + " db");
      }
}

TEST(CudaSelect, ClampMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool strided : {false, true}) {
      Tensor x = maybe_strided(small_values({6, 7}, dtype, 12), strided);  // values on the bounds, and a NaN
      for (auto [lo, hi] : {std::pair<double, double>{-1, 1}, {0, 0}, {-1e300, 1e300}, {0.5, 2}}) {
        const std::string what = std::string(dtype_name(dtype)) + " [" + std::to_string(lo) + ", " +
                                 std::to_string(hi) + "]";
        expect_equal(clamp(dev(x), lo, hi), clamp(x, lo, hi), what);
        Tensor hx = x.detach().requires_grad_(), dx = on_cuda(x).requires_grad_();
        Tensor g = uniform({6, 7}, dtype, 13);
        clamp(hx, lo, hi).backward(g);
        clamp(dx, lo, hi).backward(maybe_strided(dev(g), true));
        expect_equal(dx.grad(), hx.grad(), what + " backward");
      }
    }
  Tensor empty = uniform({0, 3}, DType::Float64, 14);
  EXPECT_EQ(clamp(dev(empty), 0, 1).shape(), (Shape{0, 3}));
}

TEST(CudaSelect, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor h = Tensor::ones({2, 3}, DType::Float32), d = dev(h);
  Tensor hm = Tensor::zeros({2, 3}, DType::Bool), dm = dev(hm);
  EXPECT_MG_ERROR(eq(d, h), "eq: devices differ: cuda:0 vs cpu");
  EXPECT_MG_ERROR(lt(h, d), "lt: devices differ");
  EXPECT_MG_ERROR(ge(d, dev(Tensor::ones({2, 3}, DType::Float64))), "ge: dtypes differ");
  EXPECT_MG_ERROR(gt(dev(hm), 0.0), "gt: input must be float32, float64 or int64, got bool");
  EXPECT_MG_ERROR(masked_fill(d, hm, 0.0), "masked_fill: mask is on cpu, the input on cuda:0");
  EXPECT_MG_ERROR(masked_fill(h, dm, 0.0), "masked_fill: mask is on cuda:0, the input on cpu");
  EXPECT_MG_ERROR(masked_fill(d, dev(Tensor::zeros({2, 3})), 0.0), "masked_fill: mask must be bool");
  EXPECT_MG_ERROR(where(hm, d, d), "where: condition is on cpu, the input on cuda:0");
  EXPECT_MG_ERROR(where(dm, d, h), "where: devices differ");
  EXPECT_MG_ERROR(where(dm, d, dev(Tensor::ones({4}))), "do not broadcast");
  EXPECT_MG_ERROR(clamp(dev(Tensor::ones({2}, DType::Int64)), 0, 1), "clamp: input must be float32 or float64");
  EXPECT_MG_ERROR(clamp(d, 1, 0), "clamp: expected low <= high");
}
