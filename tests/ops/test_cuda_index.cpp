// The indexing ops on CUDA tensors against the same ops on the CPU:
// embedding, index_select, index_add, gather and scatter_add, forward and
// backward, float32 and float64, contiguous and strided inputs, repeated
// indices (the accumulating kernels must equal the CPU bit for bit: they sum
// in the same order), empty and single-row cases, both paths of the row
// accumulation (counting sort, and per-column for large tables), and the
// errors (bad indices found on the device, mixed devices). Float64 gradchecks
// on the device: the op table, tests/ops/op_table.cpp. Tolerances: exact where the kernels sum in the CPU's order.
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

// Int64 indices in [0, n) with repeats (a fixed pattern, seeded).
Tensor random_indices(const Shape& shape, int64_t n, uint64_t seed) {
  Generator gen(seed);
  std::vector<double> u = Tensor::rand(shape, 0.0, 1.0, DType::Float64, &gen).to_vector();
  std::vector<int64_t> v(u.size());
  for (size_t i = 0; i < u.size(); ++i) v[i] = std::min<int64_t>(n - 1, static_cast<int64_t>(u[i] * n));
  return Tensor::from_indices(v, shape);
}

// x or, when strided, a non-contiguous view with x's values (x at least 2-d)
Tensor maybe_strided(const Tensor& x, bool strided) {
  if (!strided || x.dim() < 2) return x;
  return transpose(contiguous(transpose(x, 0, 1)), 0, 1);
}

// x's values on the device in x's kind of layout (strided there when x is).
Tensor dev(const Tensor& x) { return maybe_strided(on_cuda(x), !x.is_contiguous()); }

// Exact agreement: the kernels add in the CPU's order.
void expect_equal(const Tensor& got, const Tensor& want, const std::string& what) {
  expect_close(got, want, Tol{0, 0}, what);
}

// The gradient of a leaf on each device through f, with upstream g.
template <typename F>
std::pair<Tensor, Tensor> grads(F f, const Tensor& x, const Tensor& g_host) {
  Tensor hx = x.detach().requires_grad_(), dx = on_cuda(x).requires_grad_();
  f(hx, false).backward(g_host);
  f(dx, true).backward(dev(g_host));
  return {dx.grad(), hx.grad()};
}

}  // namespace

TEST(CudaIndex, IndexSelectMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool strided : {false, true})
      for (int64_t dim : {0, 1, -1}) {
        Tensor x = maybe_strided(uniform({6, 5, 4}, dtype, 1), strided);
        const int64_t n = x.shape()[dim < 0 ? dim + 3 : dim];
        Tensor idx = random_indices({9}, n, 2);
        const std::string what = std::string(dtype_name(dtype)) + " dim " + std::to_string(dim);
        expect_equal(index_select(dev(x), dim, dev(idx)), index_select(x, dim, idx), what);
        // backward: index_add of repeated rows into zeros
        Tensor g = uniform(index_select(x, dim, idx).shape(), dtype, 3);
        auto [dg, hg] = grads([&](const Tensor& t, bool cuda) { return index_select(t, dim, cuda ? dev(idx) : idx); },
                              x, g);
        expect_equal(dg, hg, what + " backward");
      }
}

TEST(CudaIndex, IndexAddMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool strided : {false, true}) {
      Tensor x = maybe_strided(uniform({7, 3}, dtype, 4), strided);
      Tensor idx = random_indices({20}, 7, 5);
      Tensor src = maybe_strided(uniform({20, 3}, dtype, 6), strided);
      const std::string what = std::string(dtype_name(dtype)) + (strided ? " strided" : "");
      expect_equal(index_add(dev(x), 0, dev(idx), dev(src)), index_add(x, 0, idx, src), what);
      // dim 1 of a 3-d tensor: outer and inner both > 1
      Tensor x3 = uniform({2, 5, 3}, dtype, 7), s3 = uniform({2, 11, 3}, dtype, 8);
      Tensor i3 = random_indices({11}, 5, 9);
      expect_equal(index_add(dev(x3), 1, dev(i3), dev(s3)), index_add(x3, 1, i3, s3), what + " 3-d");
      // backward to both inputs
      Tensor hx = x.detach().requires_grad_(), hs = src.detach().requires_grad_();
      Tensor dx = on_cuda(x).requires_grad_(), ds = on_cuda(src).requires_grad_();
      Tensor g = uniform({7, 3}, dtype, 10);
      index_add(hx, 0, idx, hs).backward(g);
      index_add(dx, 0, dev(idx), ds).backward(dev(g));
      expect_equal(dx.grad(), hx.grad(), what + " dx");
      expect_equal(ds.grad(), hs.grad(), what + " dsrc");
    }
}

TEST(CudaIndex, IndexAddLargeTableTakesColumnPath) {
  MG_SKIP_WITHOUT_CUDA();
  // n * ceil(m / 256) = 40000 * 274 > 2^23: the per-column kernel
  const int64_t n = 40000, m = 70000;
  Tensor x = uniform({n, 2}, DType::Float64, 11), src = uniform({m, 2}, DType::Float64, 12);
  Tensor idx = random_indices({m}, n, 13);
  expect_equal(index_add(dev(x), 0, dev(idx), dev(src)), index_add(x, 0, idx, src), "column path");
  // a small table (the counting sort) with one row hit by every index: one long segment
  Tensor small = uniform({5, 2}, DType::Float64, 34), one = Tensor::zeros({m}, DType::Int64);
  expect_equal(index_add(dev(small), 0, dev(one), dev(src)), index_add(small, 0, one, src), "one row");
}

TEST(CudaIndex, EmbeddingMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool strided : {false, true}) {
      Tensor w = maybe_strided(uniform({10, 6}, dtype, 14), strided);
      Tensor idx = random_indices({4, 7}, 10, 15);
      Tensor idx_t = transpose(contiguous(transpose(idx, 0, 1)), 0, 1);  // strided indices
      const std::string what = std::string(dtype_name(dtype)) + (strided ? " strided" : "");
      expect_equal(embedding(dev(w), dev(idx)), embedding(w, idx), what);
      expect_equal(embedding(dev(w), dev(idx_t)), embedding(w, idx), what + " strided indices");
      Tensor g = uniform({4, 7, 6}, dtype, 16);
      auto [dg, hg] = grads([&](const Tensor& t, bool cuda) { return embedding(t, cuda ? dev(idx) : idx); }, w, g);
      expect_equal(dg, hg, what + " dweight");
    }
  // more tokens than one sort chunk (256) and one block
  Tensor w = uniform({50, 3}, DType::Float64, 17);
  Tensor idx = random_indices({1000}, 50, 18);
  Tensor g = uniform({1000, 3}, DType::Float64, 19);
  auto [dg, hg] = grads([&](const Tensor& t, bool cuda) { return embedding(t, cuda ? dev(idx) : idx); }, w, g);
  expect_equal(dg, hg, "many tokens");
}

TEST(CudaIndex, GatherScatterAddMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool strided : {false, true})
      for (int64_t dim : {0, 1}) {
        Tensor x = maybe_strided(uniform({5, 6}, dtype, 20), strided);
        // index smaller than x outside dim, with repeats along dim
        Tensor idx = maybe_strided(random_indices({4, 3}, x.shape()[dim], 21), strided);
        const std::string what = std::string(dtype_name(dtype)) + " dim " + std::to_string(dim);
        expect_equal(gather(dev(x), dim, dev(idx)), gather(x, dim, idx), what + " gather");
        // src larger than index: only its leading part is read
        Tensor src = maybe_strided(uniform({4, 5}, dtype, 22), strided);
        expect_equal(scatter_add(dev(x), dim, dev(idx), dev(src)), scatter_add(x, dim, idx, src),
                     what + " scatter_add");
        // backward of gather (a scatter_add into zeros)
        Tensor g = uniform({4, 3}, dtype, 23);
        auto [dg, hg] = grads([&](const Tensor& t, bool cuda) { return gather(t, dim, cuda ? dev(idx) : idx); },
                              x, g);
        expect_equal(dg, hg, what + " gather backward");
        // backward of scatter_add to src (a gather, zero where src was not read)
        Tensor hs = src.detach().requires_grad_(), ds = on_cuda(src).requires_grad_();
        Tensor gs = uniform({5, 6}, dtype, 24);
        scatter_add(x, dim, idx, hs).backward(gs);
        scatter_add(dev(x), dim, dev(idx), ds).backward(dev(gs));
        expect_equal(ds.grad(), hs.grad(), what + " dsrc");
      }
  // a 3-d case with long lines (longer than a block) along the indexed dim
  Tensor x = uniform({2, 300, 3}, DType::Float64, 25);
  Tensor idx = random_indices({2, 700, 3}, 300, 26);
  Tensor src = uniform({2, 700, 3}, DType::Float64, 27);
  expect_equal(gather(dev(x), 1, dev(idx)), gather(x, 1, idx), "3-d gather");
  expect_equal(scatter_add(dev(x), 1, dev(idx), dev(src)), scatter_add(x, 1, idx, src), "3-d scatter");
}

TEST(CudaIndex, EmptyAndSingleRow) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = uniform({4, 3}, DType::Float64, 28);
  Tensor none = Tensor::from_indices({}, {0});
  Tensor got = index_select(dev(x), 0, dev(none));
  EXPECT_EQ(got.shape(), (Shape{0, 3}));
  expect_equal(index_add(dev(x), 0, dev(none), dev(Tensor::zeros({0, 3}, DType::Float64))), x,
               "index_add of nothing");
  expect_equal(embedding(dev(x), dev(none)), embedding(x, none), "no tokens");
  Tensor none2 = Tensor::from_indices({}, {0, 3});
  expect_equal(gather(dev(x), 0, dev(none2)), gather(x, 0, none2), "empty gather");
  expect_equal(scatter_add(dev(x), 0, dev(none2), dev(Tensor::zeros({0, 3}, DType::Float64))), x,
               "empty scatter_add");
  Tensor row = uniform({1, 5}, DType::Float64, 29), one = Tensor::from_indices({0, 0, 0}, {3});
  expect_equal(index_select(dev(row), 0, dev(one)), index_select(row, 0, one), "single row");
  expect_equal(embedding(dev(row), dev(one)), embedding(row, one), "single-row vocabulary");
}

TEST(CudaIndex, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = dev(Tensor::zeros({3, 4}, DType::Float64));
  auto idx = [](std::vector<int64_t> v, Shape s = {}) {
    if (s.empty()) s = {static_cast<int64_t>(v.size())};
    return dev(Tensor::from_indices(v, s));
  };
  // out of range, found on the device, with the CPU's message (the first bad index)
  EXPECT_MG_ERROR(index_select(x, 0, idx({0, 3, -1})), "index_select: index 3 out of range [0, 3) for dimension 0");
  EXPECT_MG_ERROR(index_select(x, 1, idx({-1})), "index_select: index -1 out of range [0, 4)");
  EXPECT_MG_ERROR(index_add(x, 0, idx({5}), dev(Tensor::zeros({1, 4}, DType::Float64))),
                  "index_add: index 5 out of range");
  EXPECT_MG_ERROR(gather(x, 1, idx({0, 4}, {1, 2})), "gather: index 4 out of range [0, 4)");
  EXPECT_MG_ERROR(scatter_add(x, 0, idx({-2}, {1, 1}), dev(Tensor::zeros({1, 1}, DType::Float64))),
                  "scatter_add: index -2 out of range");
  EXPECT_MG_ERROR(embedding(x, idx({1, 3})), "embedding: index 3 out of range [0, 3)");
  // mixed devices
  Tensor h = Tensor::zeros({3, 4}, DType::Float64);
  EXPECT_MG_ERROR(index_select(x, 0, Tensor::from_indices({0}, {1})), "index_select: index is on cpu, expected cuda:0");
  EXPECT_MG_ERROR(index_select(h, 0, idx({0})), "index_select: index is on cuda:0, expected cpu");
  EXPECT_MG_ERROR(embedding(x, Tensor::from_indices({0}, {1})), "embedding: indices is on cpu, expected cuda:0");
  EXPECT_MG_ERROR(index_add(x, 0, idx({0}), Tensor::zeros({1, 4}, DType::Float64)), "index_add: devices differ");
  EXPECT_MG_ERROR(scatter_add(x, 0, idx({0}, {1, 1}), Tensor::zeros({1, 1}, DType::Float64)),
                  "scatter_add: devices differ");
  EXPECT_MG_ERROR(gather(x, 0, Tensor::from_indices({0}, {1, 1})), "gather: index is on cpu, expected cuda:0");
  // wrong dtypes
  EXPECT_MG_ERROR(index_select(x, 0, dev(Tensor::zeros({2}))), "index_select: index must be int64");
  EXPECT_MG_ERROR(gather(dev(Tensor::zeros({3}, DType::Int64)), 0, idx({0})), "gather: input must be float32");
}
