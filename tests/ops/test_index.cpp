// embedding, index_select, index_add, gather, scatter_add: values against
// naive loops (with repeated indices, so accumulation is exercised),
// non-contiguous inputs, float32 against float64, results that do not depend
// on the thread count, and errors (out-of-range indices included). Gradient
// checks: the op table, tests/ops/op_table.cpp.
#ifdef _OPENMP
#include <omp.h>
#endif

#include "test_helpers.h"

using namespace moegrad;
using moegrad::testing::expect_near;

namespace {

Tensor idx(const std::vector<int64_t>& v, const Shape& shape) { return Tensor::from_indices(v, shape); }
Tensor idx(const std::vector<int64_t>& v) { return idx(v, {static_cast<int64_t>(v.size())}); }

// Row-major offset of a multi-index.
int64_t flat(const Shape& shape, const Shape& at) {
  int64_t off = 0;
  for (size_t d = 0; d < shape.size(); ++d) off = off * shape[d] + at[d];
  return off;
}

// Calls f(multi-index) for every element of shape, row-major.
template <typename F>
void for_each_index(const Shape& shape, F f) {
  Shape at(shape.size(), 0);
  for (int64_t i = 0; i < shape_numel(shape); ++i) {
    f(at);
    for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
      if (++at[d] < shape[d]) break;
      at[d] = 0;
    }
  }
}

// Naive gather / scatter_add over any rank.
std::vector<double> naive_gather(const Tensor& x, int64_t d, const Tensor& index) {
  std::vector<double> xv = x.to_vector(), out;
  std::vector<int64_t> iv = index.to_indices();
  for_each_index(index.shape(), [&](const Shape& at) {
    Shape src = at;
    src[d] = iv[flat(index.shape(), at)];
    out.push_back(xv[flat(x.shape(), src)]);
  });
  return out;
}

std::vector<double> naive_scatter_add(const Tensor& x, int64_t d, const Tensor& index, const Tensor& src) {
  std::vector<double> out = x.to_vector(), sv = src.to_vector();
  std::vector<int64_t> iv = index.to_indices();
  for_each_index(index.shape(), [&](const Shape& at) {
    Shape to = at;
    to[d] = iv[flat(index.shape(), at)];
    out[flat(x.shape(), to)] += sv[flat(src.shape(), at)];
  });
  return out;
}

}  // namespace

// ---- index_select ----

TEST(IndexSelect, Values) {
  Tensor x = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 4}, DType::Float64);
  EXPECT_EQ(index_select(x, 0, idx({2, 0, 2})).to_vector(),
            (std::vector<double>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11}));
  EXPECT_EQ(index_select(x, 1, idx({3, 3, 1})).to_vector(), (std::vector<double>{3, 3, 1, 7, 7, 5, 11, 11, 9}));
  EXPECT_EQ(index_select(x, -1, idx({})).shape(), (Shape{3, 0}));
  // non-contiguous x: rows of xᵀ are columns of x
  EXPECT_EQ(index_select(transpose(x, 0, 1), 0, idx({1, 1})).to_vector(), (std::vector<double>{1, 5, 9, 1, 5, 9}));
}

// ---- index_add ----

TEST(IndexAdd, ValuesRepeatedIndices) {
  Tensor x = Tensor::from_vector({1, 1, 1, 1, 1, 1}, {3, 2}, DType::Float64);
  Tensor src = Tensor::from_vector({1, 2, 10, 20, 100, 200, 1000, 2000}, {4, 2}, DType::Float64);
  EXPECT_EQ(index_add(x, 0, idx({2, 0, 2, 2}), src).to_vector(), (std::vector<double>{11, 21, 1, 1, 1102, 2203}));
  EXPECT_EQ(index_add(x, 1, idx({1, 1, 0}), Tensor::from_vector({1, 2, 4, 8, 16, 32, 64, 128, 256}, {3, 3},
                                                                 DType::Float64))
                .to_vector(),
            (std::vector<double>{5, 4, 33, 25, 257, 193}));
  // x is not modified; a non-contiguous x works
  EXPECT_EQ(x.to_vector(), std::vector<double>(6, 1.0));
  Tensor xt = transpose(Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64), 0, 1);  // [3, 2]
  EXPECT_EQ(index_add(xt, 0, idx({1, 1}), Tensor::ones({2, 2}, DType::Float64)).to_vector(),
            (std::vector<double>{1, 4, 4, 7, 3, 6}));
}

// ---- gather ----

TEST(Gather, Values) {
  Tensor x = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64);
  EXPECT_EQ(gather(x, 1, idx({2, 0, 0, 1, 1, 1}, {2, 3})).to_vector(), (std::vector<double>{3, 1, 1, 5, 5, 5}));
  EXPECT_EQ(gather(x, 0, idx({1, 0, 1}, {1, 3})).to_vector(), (std::vector<double>{4, 2, 6}));
  // index smaller than x outside dim, x non-contiguous, index non-contiguous, 3-d
  Tensor x3 = Tensor::randn({4, 3, 5}, 0, 1, DType::Float64);
  Tensor xt = transpose(x3, 0, 2);  // [5, 3, 4]
  Tensor i3 = transpose(idx({0, 4, 2, 3, 1, 1, 0, 0, 2, 4, 4, 3}, {2, 3, 2}), 0, 2);  // [2, 3, 2]
  for (int64_t d : {0, 1, 2}) {
    Tensor i = d == 0 ? i3 : (d == 1 ? narrow(idx({0, 2, 1, 1, 2, 0, 0, 0, 1, 2, 2, 1}, {2, 3, 2}), 1, 0, 2)
                                     : idx({3, 0, 0, 1, 2, 3, 3, 3, 0, 1, 2, 2}, {2, 3, 2}));
    expect_near(gather(xt, d, i).to_vector(), naive_gather(xt, d, i));
  }
}

// ---- scatter_add ----

TEST(ScatterAdd, ValuesRepeatedIndices) {
  Tensor x = Tensor::zeros({2, 3}, DType::Float64);
  Tensor src = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {2, 3}, DType::Float64);
  EXPECT_EQ(scatter_add(x, 1, idx({0, 0, 2, 1, 1, 1}, {2, 3}), src).to_vector(),
            (std::vector<double>{3, 0, 3, 0, 15, 0}));
  EXPECT_EQ(scatter_add(x, 0, idx({1, 1, 1}, {1, 3}), src).to_vector(), (std::vector<double>{0, 0, 0, 1, 2, 3}));
  // 3-d, non-contiguous x and src, src larger than index
  Tensor x3 = transpose(Tensor::randn({4, 3, 2}, 0, 1, DType::Float64), 0, 2);  // [2, 3, 4]
  Tensor s3 = narrow(Tensor::randn({3, 3, 5}, 0, 1, DType::Float64), 2, 1, 4);  // [3, 3, 4]
  Tensor i3 = idx({1, 0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 1, 1, 1}, {2, 3, 4});
  expect_near(scatter_add(x3, 0, i3, s3).to_vector(), naive_scatter_add(x3, 0, i3, s3));
  Tensor i3b = idx({3, 3, 0, 1, 2, 2, 3, 0, 0, 0, 1, 3}, {2, 3, 2});
  expect_near(scatter_add(x3, 2, i3b, s3).to_vector(), naive_scatter_add(x3, 2, i3b, s3));
}

// ---- embedding ----

TEST(Embedding, ValuesAndAccumulatedGradient) {
  Tensor w = Tensor::from_vector({0, 1, 10, 11, 20, 21}, {3, 2}, DType::Float64);
  w.requires_grad_();
  Tensor out = embedding(w, idx({2, 0, 2, 2}, {2, 2}));
  EXPECT_EQ(out.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(out.to_vector(), (std::vector<double>{20, 21, 0, 1, 20, 21, 20, 21}));
  sum(out).backward();
  EXPECT_EQ(w.grad().to_vector(), (std::vector<double>{1, 1, 0, 0, 3, 3}));
  EXPECT_EQ(embedding(w, Tensor::from_indices({1}, {})).to_vector(), (std::vector<double>{10, 11}));
}

// ---- all ops ----

TEST(IndexOps, Float32MatchesFloat64) {
  Tensor x = Tensor::randn({6, 5}, 0, 1, DType::Float64), src = Tensor::randn({6, 5}, 0, 1, DType::Float64);
  Tensor i1 = idx({5, 0, 0, 3, 5, 1}), i2 = idx({4, 4, 0, 1, 2, 3, 3, 3, 0, 0, 1, 2}, {6, 2});
  auto x32 = x.to(DType::Float32), s32 = src.to(DType::Float32);
  auto close = [](const Tensor& a, const Tensor& b) { expect_near(a.to_vector(), b.to_vector(), 1e-5); };
  close(index_select(x32, 0, i1), index_select(x, 0, i1));
  close(index_add(x32, 0, i1, s32), index_add(x, 0, i1, src));
  close(gather(x32, 1, i2), gather(x, 1, i2));
  close(scatter_add(x32, 1, i2, s32), scatter_add(x, 1, i2, src));
  close(embedding(x32, i2), embedding(x, i2));
}

// Many repeated indices, big enough to run in parallel: the accumulating
// kernels must give, with any thread count, exactly the sum in index order.
TEST(IndexOps, AccumulationIndependentOfThreadCount) {
  const int64_t rows = 3000, cols = 64, vocab = 7;
  Tensor src = Tensor::randn({rows, cols}, 0, 1, DType::Float32);
  std::vector<int64_t> iv(rows);
  for (int64_t r = 0; r < rows; ++r) iv[r] = (r * 5) % vocab;
  Tensor i = idx(iv), i2 = expand(reshape(i, {rows, 1}), {rows, cols});
  std::vector<float> want(vocab * cols, 0.0f);  // sequential float32 sums in index order
  const float* sp = src.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) want[iv[r] * cols + c] += sp[r * cols + c];
  std::vector<double> want_d(want.begin(), want.end());
  auto run = [&]() {
    Tensor w = Tensor::zeros({vocab, cols});
    w.requires_grad_();
    embedding(w, i).backward(src);
    return std::vector<std::vector<double>>{index_add(Tensor::zeros({vocab, cols}), 0, i, src).to_vector(),
                                            scatter_add(Tensor::zeros({vocab, cols}), 0, i2, src).to_vector(),
                                            w.grad().to_vector()};
  };
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  auto one = run();
  omp_set_num_threads(std::max(threads, 4));
  auto many = run();
  omp_set_num_threads(threads);
  EXPECT_EQ(one, many);
#else
  auto many = run();
#endif
  for (auto& v : many) EXPECT_EQ(v, want_d);
}

TEST(IndexOps, Errors) {
  Tensor x = Tensor::zeros({3, 4}, DType::Float64);
  // out-of-range indices, checked before anything is written
  EXPECT_MG_ERROR(index_select(x, 0, idx({0, 3})), "index_select: index 3 out of range [0, 3) for dimension 0");
  EXPECT_MG_ERROR(index_select(x, 1, idx({-1})), "index_select: index -1 out of range [0, 4)");
  EXPECT_MG_ERROR(index_add(x, 0, idx({5}), Tensor::zeros({1, 4}, DType::Float64)), "index_add: index 5 out of range");
  EXPECT_MG_ERROR(gather(x, 1, idx({0, 4}, {1, 2})), "gather: index 4 out of range [0, 4)");
  EXPECT_MG_ERROR(scatter_add(x, 0, idx({-2}, {1, 1}), Tensor::zeros({1, 1}, DType::Float64)),
                  "scatter_add: index -2 out of range [0, 3)");
  EXPECT_MG_ERROR(embedding(x, idx({1, 3})), "embedding: index 3 out of range [0, 3)");
  // index dtype, rank and shape
  EXPECT_MG_ERROR(index_select(x, 0, Tensor::zeros({2})), "index_select: index must be int64");
  EXPECT_MG_ERROR(index_select(x, 0, idx({0, 1}, {1, 2})), "index_select: index must be 1-d");
  EXPECT_MG_ERROR(gather(x, 0, idx({0, 1})), "gather: index of shape [2] must have the same number of dimensions");
  EXPECT_MG_ERROR(gather(x, 0, idx({0, 0, 0, 0, 0}, {1, 5})), "gather: index of shape [1, 5] is larger than the input");
  EXPECT_MG_ERROR(embedding(x, Tensor::zeros({2})), "embedding: indices must be int64");
  // dims, shapes and dtypes of x and src
  EXPECT_MG_ERROR(index_select(x, 2, idx({0})), "index_select: dimension 2 out of range");
  EXPECT_MG_ERROR(gather(x, -3, idx({0}, {1, 1})), "gather: dimension -3 out of range");
  EXPECT_MG_ERROR(index_select(Tensor::scalar(1.0), 0, idx({0})), "index_select: expected a tensor with at least one");
  EXPECT_MG_ERROR(index_add(x, 0, idx({0}), Tensor::zeros({1, 3}, DType::Float64)),
                  "index_add: src must have shape [1, 4]");
  EXPECT_MG_ERROR(index_add(x, 0, idx({0}), Tensor::zeros({1, 4})), "index_add: dtypes differ");
  EXPECT_MG_ERROR(scatter_add(x, 0, idx({0, 0}, {1, 2}), Tensor::zeros({1, 1}, DType::Float64)),
                  "scatter_add: index of shape [1, 2] is larger than src [1, 1]");
  EXPECT_MG_ERROR(scatter_add(x, 0, idx({0}, {1, 1}), Tensor::zeros({1, 1})), "scatter_add: dtypes differ");
  EXPECT_MG_ERROR(scatter_add(x, 0, idx({0}, {1, 1}), Tensor::zeros({1, 1, 1}, DType::Float64)),
                  "scatter_add: src of shape [1, 1, 1] must have the same number of dimensions");
  EXPECT_MG_ERROR(embedding(Tensor::zeros({3}), idx({0})), "embedding: weight must be 2-d");
  EXPECT_MG_ERROR(gather(Tensor::zeros({3}, DType::Int64), 0, idx({0}, {1})), "gather: input must be float32");
  EXPECT_MG_ERROR(index_add(Tensor(), 0, idx({0}), x), "index_add: input is an undefined tensor");
}
