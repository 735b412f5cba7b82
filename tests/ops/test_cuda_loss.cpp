// cross_entropy on CUDA tensors against the CPU: short and long rows (one
// warp, past one block, very long), many rows (past one grid), some / all / no targets
// ignored, a custom ignore_index that is a class, an empty batch,
// non-contiguous logits and targets, large logits, a scaled upstream
// gradient, forward and backward in float32 and float64, run-to-run
// determinism, and the errors (a bad target gives the CPU's message, targets
// on another device or of another dtype). Float64 gradchecks on the device:
// the op table, tests/ops/op_table.cpp.
// Tolerances: test_cuda_helpers.h (float64 1e-12 relative, float32 1e-5);
// the gradient's p·s − s at the target rounds p·s by itself on both sides.
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

// Targets for N rows of C classes: every 5th ignored when `ignore` is set.
Tensor make_targets(int64_t N, int64_t C, bool ignore, int64_t ignore_index = -100) {
  std::vector<int64_t> t(N);
  for (int64_t i = 0; i < N; ++i) t[i] = ignore && i % 5 == 2 ? ignore_index : (i * 7 + 3) % C;
  return Tensor::from_indices(t, {N});
}

// The loss and the logits' gradient for an upstream gradient of 2.5 on the
// device against the CPU.
void expect_matches_cpu(const Tensor& logits, const Tensor& targets, int64_t ignore_index, const std::string& what) {
  const std::string label = std::string(dtype_name(logits.dtype())) + " " + what;
  Tensor xc = logits.detach(), xd = on_cuda(logits).detach();
  xc.requires_grad_();
  xd.requires_grad_();
  Tensor lc = cross_entropy(xc, targets, ignore_index), ld = cross_entropy(xd, on_cuda(targets), ignore_index);
  ASSERT_TRUE(ld.device().is_cuda()) << label;
  expect_close(ld, lc, label + " loss");
  mul(lc, 2.5).backward();
  mul(ld, 2.5).backward();
  expect_close(xd.grad(), xc.grad(), label + " grad");
}

// The message of the Error that f throws ("" if none).
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(CudaCrossEntropy, RowLengthsAndIgnoredTargetsMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  // ... {70000, 3}: more rows than one grid (65535 blocks: the grid-stride loop over rows)
  const std::vector<Shape> shapes = {{1, 1},     {4, 5},     {300, 7},   {3, 33},
                                     {5, 257},   {64, 1000}, {2, 70000}, {3000, 12}, {70000, 3}};
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const Shape& shape : shapes)
      for (bool ignore : {false, true}) {
        Tensor x = uniform(shape, dtype, 1, -3, 3);
        expect_matches_cpu(x, make_targets(shape[0], shape[1], ignore), -100,
                           shape_str(shape) + (ignore ? " some ignored" : ""));
      }
}

TEST(CudaCrossEntropy, EdgeCasesMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    Tensor x = uniform({6, 4}, dtype, 2, -3, 3);
    // a custom ignore_index that is also a class
    expect_matches_cpu(x, make_targets(6, 4, true, 1), 1, "ignore_index 1");
    // every target ignored: loss 0, zero gradient
    expect_matches_cpu(x, Tensor::from_indices(std::vector<int64_t>(6, -100), {6}), -100, "all ignored");
    EXPECT_EQ(cross_entropy(on_cuda(x), on_cuda(Tensor::from_indices(std::vector<int64_t>(6, 7), {6})), 7).item(), 0.0);
    // no rows at all, and rows of no classes whose targets are all ignored
    expect_matches_cpu(Tensor::zeros({0, 4}, dtype), Tensor::from_indices({}, {0}), -100, "empty batch");
    expect_matches_cpu(Tensor::zeros({2, 0}, dtype), Tensor::from_indices({-100, -100}, {2}), -100, "no classes");
    // transposed logits and strided targets
    Tensor xt = transpose(uniform({9, 5}, dtype, 3, -3, 3), 0, 1);
    Tensor tt = slice(Tensor::from_indices({2, 0, 8, 1, -100, 4, 3, 0, 7, 6}, {10}), 0, 0, 10, 2);
    expect_matches_cpu(xt, tt, -100, "transposed logits, strided targets");
    // large logits: lse without overflow
    expect_matches_cpu(add(uniform({4, 300}, dtype, 4), 1000.0), make_targets(4, 300, false), -100, "large");
  }
}

TEST(CudaCrossEntropy, Deterministic) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = on_cuda(uniform({4096, 1000}, DType::Float32, 5, -3, 3));
  x.requires_grad_();
  Tensor t = on_cuda(make_targets(4096, 1000, true));
  Tensor loss = cross_entropy(x, t);
  const double first = loss.item();
  loss.backward();
  const std::vector<double> grad = x.grad().to_vector();
  for (int run = 0; run < 3; ++run) {
    x.zero_grad();
    Tensor again = cross_entropy(x, t);
    EXPECT_EQ(again.item(), first);
    again.backward();
    EXPECT_EQ(x.grad().to_vector(), grad);
  }
}

TEST(CudaCrossEntropy, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = uniform({4, 5}, DType::Float32, 8), xd = on_cuda(x);
  // a bad target: found on the device, reported with the CPU's message
  for (const std::vector<int64_t>& t : {std::vector<int64_t>{1, 7, -3, 0}, std::vector<int64_t>{1, -100, 2, -1},
                                        std::vector<int64_t>{5, 0, 0, 9}}) {
    Tensor tc = Tensor::from_indices(t, {4});
    const std::string want = error_of([&] { cross_entropy(x, tc); });
    ASSERT_NE(want.find("cross_entropy: target"), std::string::npos) << want;
    EXPECT_EQ(error_of([&] { cross_entropy(xd, on_cuda(tc)); }), want);
  }
  EXPECT_MG_ERROR(cross_entropy(xd, on_cuda(Tensor::from_indices({1, 7, 0, 0}, {4}))),
                  "cross_entropy: target 7 at position 1 is outside [0, 5) and is not ignore_index (-100)");
  Tensor t = Tensor::from_indices({1, 2, 3, 4}, {4});
  EXPECT_MG_ERROR(cross_entropy(xd, t), "cross_entropy: targets is on cpu, expected cuda:0");
  EXPECT_MG_ERROR(cross_entropy(x, on_cuda(t)), "cross_entropy: targets is on cuda:0, expected cpu");
  EXPECT_MG_ERROR(cross_entropy(xd, on_cuda(t.to(DType::Float32))), "cross_entropy: targets must be int64");
  EXPECT_MG_ERROR(cross_entropy(xd, on_cuda(Tensor::from_indices({1, 2}, {2}))),
                  "cross_entropy: targets must have shape [4]");
  EXPECT_MG_ERROR(cross_entropy(on_cuda(Tensor::ones({4})), on_cuda(t)), "cross_entropy: logits must be 2-d");
  EXPECT_MG_ERROR(cross_entropy(on_cuda(Tensor::ones({4, 5}, DType::Int64)), on_cuda(t)),
                  "cross_entropy: logits must be float32 or float64");
}
