// Tensor core: construction, views sharing storage, contiguous(), copies and
// conversions, seeded random init, printing, the caching allocator.
#include <cmath>
#include <limits>
#include <sstream>

#include "tensor/allocator.h"
#include "tensor/backend.h"
#include "test_helpers.h"

using namespace moegrad;

TEST(Tensor, FactoriesAndMetadata) {
  Tensor t = Tensor::zeros({2, 3, 4}, DType::Float64);
  EXPECT_EQ(t.shape(), (Shape{2, 3, 4}));
  EXPECT_EQ(t.strides(), (Shape{12, 4, 1}));
  EXPECT_EQ(t.numel(), 24);
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(Tensor::full({2}, 2.5).to_vector(), (std::vector<double>{2.5, 2.5}));
  EXPECT_EQ(Tensor::arange(4).to_indices(), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(Tensor::scalar(3.0).item(), 3.0);
  EXPECT_EQ(Tensor::from_indices({5, 6}, {2}).to_indices(), (std::vector<int64_t>{5, 6}));
  Tensor e = Tensor::empty({0, 3});
  EXPECT_EQ(e.numel(), 0);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor x = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3}, DType::Float64);
  Tensor t = transpose(x, 0, 1);
  EXPECT_EQ(t.shape(), (Shape{3, 2}));
  EXPECT_FALSE(t.is_contiguous());
  EXPECT_EQ(t.storage(), x.storage());
  EXPECT_EQ(t.to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  Tensor s = narrow(x, 1, 1, 2);
  EXPECT_EQ(s.to_vector(), (std::vector<double>{1, 2, 4, 5}));
  s.fill_(9.0);  // writes through the view
  EXPECT_EQ(x.to_vector(), (std::vector<double>{0, 9, 9, 3, 9, 9}));
  Tensor r = reshape(x, {3, 2});
  EXPECT_EQ(r.storage(), x.storage());
  Tensor c = contiguous(t);
  EXPECT_TRUE(c.is_contiguous());
  EXPECT_NE(c.storage(), x.storage());
  EXPECT_EQ(c.to_vector(), t.to_vector());
  Tensor ex = expand(Tensor::from_vector({1, 2}, {2, 1}, DType::Float64), {2, 3});
  EXPECT_EQ(ex.strides()[1], 0);
  EXPECT_EQ(ex.to_vector(), (std::vector<double>{1, 1, 1, 2, 2, 2}));
}

TEST(Tensor, ReshapeOfNonContiguousCopies) {
  Tensor x = Tensor::from_vector({0, 1, 2, 3, 4, 5}, {2, 3}, DType::Float64);
  Tensor r = reshape(transpose(x, 0, 1), {6});
  EXPECT_EQ(r.to_vector(), (std::vector<double>{0, 3, 1, 4, 2, 5}));
  EXPECT_NE(r.storage(), x.storage());
  EXPECT_EQ(reshape(x, {-1, 2}).shape(), (Shape{3, 2}));
}

TEST(Tensor, CopyAndConvert) {
  Tensor x = Tensor::from_vector({1.5, -2.5, 3.25}, {3}, DType::Float64);
  Tensor f = x.to(DType::Float32);
  EXPECT_EQ(f.dtype(), DType::Float32);
  EXPECT_EQ(f.to_vector(), x.to_vector());
  Tensor i = x.to(DType::Int64);
  EXPECT_EQ(i.to_indices(), (std::vector<int64_t>{1, -2, 3}));
  Tensor dst = Tensor::zeros({2, 3}, DType::Float32);
  dst.copy_(x);  // broadcast copy
  EXPECT_EQ(dst.to_vector(), (std::vector<double>{1.5, -2.5, 3.25, 1.5, -2.5, 3.25}));
  EXPECT_TRUE(x.to(DType::Float64).same(x));
}

// Floats that the target type cannot hold saturate: NaN to 0 and ±inf to the
// limits for int64, past float32's range to ±inf (no undefined behaviour).
TEST(Tensor, ConversionsSaturate) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const int64_t most = std::numeric_limits<int64_t>::max(), least = std::numeric_limits<int64_t>::min();
  const Tensor x = Tensor::from_vector({nan, inf, -inf, 1e300, -1e300, -7.9}, {6}, DType::Float64);
  const std::vector<int64_t> ints = {0, most, least, most, least, -7};
  EXPECT_EQ(x.to(DType::Int64).to_indices(), ints);
  EXPECT_EQ(Tensor::from_vector(x.to_vector(), {6}, DType::Int64).to_indices(), ints);
  const std::vector<double> f = x.to(DType::Float32).to_vector();
  EXPECT_TRUE(std::isnan(f[0]));
  EXPECT_EQ(f[3], inf);
  EXPECT_EQ(f[4], -inf);
  EXPECT_EQ(f[5], static_cast<double>(-7.9f));
}

// A copy between views of the same memory reads the source whole first.
TEST(Tensor, CopyFromOverlappingMemory) {
  Tensor x = Tensor::from_vector({1, 2, 3, 4}, {2, 2}, DType::Float64);
  x.copy_(transpose(x, 0, 1));
  EXPECT_EQ(x.to_vector(), (std::vector<double>{1, 3, 2, 4}));
  Tensor y = Tensor::from_vector({1, 2, 3, 4, 5}, {5}, DType::Float64);
  slice(y, 0, 1, 5).copy_(slice(y, 0, 0, 4));  // shift right by one, overlapping
  EXPECT_EQ(y.to_vector(), (std::vector<double>{1, 1, 2, 3, 4}));
  Tensor z = Tensor::from_vector({1, 2, 3, 4, 5, 6}, {6}, DType::Float64);
  slice(z, 0, 0, 6, 2).copy_(slice(z, 0, 1, 6, 2));  // strided, interleaved
  EXPECT_EQ(z.to_vector(), (std::vector<double>{2, 2, 4, 4, 6, 6}));
}

TEST(Tensor, SeededRandomIsReproducible) {
  Generator g1(42), g2(42), g3(43);
  Tensor a = Tensor::randn({1000}, 0, 1, DType::Float64, &g1);
  Tensor b = Tensor::randn({1000}, 0, 1, DType::Float64, &g2);
  Tensor c = Tensor::randn({1000}, 0, 1, DType::Float64, &g3);
  EXPECT_EQ(a.to_vector(), b.to_vector());
  EXPECT_NE(a.to_vector(), c.to_vector());
  // the stream continues: a second draw differs from the first
  EXPECT_NE(Tensor::randn({1000}, 0, 1, DType::Float64, &g1).to_vector(), a.to_vector());
  // moments of a large sample
  Tensor n = Tensor::randn({200000}, 2.0, 3.0, DType::Float64, &g1);
  double m = mean(n).item();
  double var = mean(pow(n - m, 2.0)).item();
  EXPECT_NEAR(m, 2.0, 0.03);
  EXPECT_NEAR(std::sqrt(var), 3.0, 0.03);
  Tensor u = Tensor::rand({200000}, -1.0, 3.0, DType::Float32, &g1);
  std::vector<double> uv = u.to_vector();
  EXPECT_GE(*std::min_element(uv.begin(), uv.end()), -1.0);
  EXPECT_LT(*std::max_element(uv.begin(), uv.end()), 3.0);
  EXPECT_NEAR(mean(u).item(), 1.0, 0.02);
  manual_seed(7);
  Tensor d1 = Tensor::rand({5});
  manual_seed(7);
  EXPECT_EQ(Tensor::rand({5}).to_vector(), d1.to_vector());
}

TEST(Tensor, Printing) {
  std::ostringstream os;
  os << Tensor::from_vector({1, 2, 3, 4}, {2, 2}, DType::Float64);
  EXPECT_EQ(os.str(), "tensor([[1, 2],\n        [3, 4]], dtype=float64, shape=[2, 2])");
  std::ostringstream big;
  big << Tensor::arange(100);
  EXPECT_NE(big.str().find("0, 1, 2, ..., 97, 98, 99"), std::string::npos) << big.str();
}

TEST(Tensor, AllocatorReusesFreedBlocks) {
  Allocator& a = allocator_for(DeviceType::CPU);
  { Tensor warm = Tensor::empty({1000, 37}); }
  int64_t before = a.stats().system_allocs;
  for (int i = 0; i < 10; ++i) Tensor t = Tensor::empty({1000, 37});
  EXPECT_EQ(a.stats().system_allocs, before);
  EXPECT_EQ(allocation_size_class(1), 64u);
  EXPECT_EQ(allocation_size_class(4097), 5120u);
  EXPECT_GE(allocation_size_class(100000), 100000u);
  EXPECT_LE(allocation_size_class(100000), 125000u);
}

TEST(Tensor, Errors) {
  EXPECT_MG_ERROR(Tensor::from_vector({1, 2, 3}, {2, 2}), "from_vector: 3 values do not fill shape [2, 2]");
  EXPECT_MG_ERROR(Tensor::zeros({2, -1}), "negative size");
  Tensor x = Tensor::zeros({2, 3});
  EXPECT_MG_ERROR(x.data<double>(), "tensor has dtype float32");
  EXPECT_MG_ERROR(x.item(), "Tensor::item: expected one element, got shape [2, 3]");
  EXPECT_MG_ERROR(x.at({2, 0}), "out of range");
  EXPECT_MG_ERROR(x.size(2), "dimension 2 out of range");
  EXPECT_MG_ERROR(x.as_strided({4, 3}, {3, 1}, 0), "reaches outside");
  // strides whose span overflows int64 (4 · 2^62 wraps to 0, 1 + INT64_MAX to negative) reach outside too
  const int64_t big = std::numeric_limits<int64_t>::max();
  EXPECT_MG_ERROR(x.as_strided({5}, {int64_t{1} << 62}, 0), "reaches outside");
  EXPECT_MG_ERROR(x.as_strided({2}, {big}, 1), "reaches outside");
  EXPECT_MG_ERROR(x.as_strided({2}, {-big - 1}, 5), "reaches outside");
  EXPECT_MG_ERROR(x.as_strided({1}, {1}, big), "reaches outside");
  EXPECT_MG_ERROR(x.as_strided({2, 2}, {-3, 1}, 2), "reaches outside");
  EXPECT_EQ(x.as_strided({2, 2}, {-3, 1}, 3).to_vector(), (std::vector<double>{0, 0, 0, 0}));  // rows 1 and 0
  EXPECT_EQ(x.as_strided({3, 0}, {big, big}, 0).numel(), 0);  // an empty view reads nothing
  EXPECT_MG_ERROR(x.copy_(Tensor::zeros({4})), "does not broadcast");
  EXPECT_MG_ERROR(Tensor::zeros({2}, DType::Int64).requires_grad_(), "only float tensors");
  if (cuda_device_count() == 0)  // a build without the backend, or one with it on a machine without a GPU
    EXPECT_MG_ERROR(x.to(Device::cuda(0)), cuda_backend() ? "no CUDA device is visible" : "CUDA backend");
  EXPECT_MG_ERROR(Tensor().shape(), "undefined tensor");
  EXPECT_MG_ERROR(Tensor::rand({2}, 1.0, 0.0), "rand: low (1) and high (0) must be finite, low at most high");
  EXPECT_MG_ERROR(Tensor::rand({2}, -INFINITY, 0.0), "rand: low (-inf)");
  EXPECT_MG_ERROR(Tensor::randn({2}, NAN, 1.0), "randn: mean and std must be finite, std >= 0, got nan and 1");
  EXPECT_MG_ERROR(Tensor::randn({2}, 0.0, INFINITY), "randn: mean and std must be finite");
  EXPECT_MG_ERROR(Tensor::randn({2}, 0.0, -1.0), "randn: mean and std must be finite, std >= 0, got 0 and -1");
}

TEST(Tensor, OutOfRangeScalarsSaturate) {
  // a double beyond float's range becomes ±inf rather than undefined behaviour
  EXPECT_EQ(Tensor::full({1}, 1e300).item(), INFINITY);
  EXPECT_EQ(Tensor::full({1}, -1e300).item(), -INFINITY);
  EXPECT_EQ(Tensor::full({1}, 1e300, DType::Int64).to_indices()[0], std::numeric_limits<int64_t>::max());
  EXPECT_EQ(clamp(Tensor::full({2}, 3.0), -1e300, 1e300).to_vector(), (std::vector<double>{3, 3}));
}

// A shape whose bytes cannot be counted, or an allocation beyond any machine,
// is an Error, not an overflow or a hang.
TEST(Tensor, HugeShapesAreErrors) {
  EXPECT_MG_ERROR(Tensor::empty({int64_t(1) << 40, int64_t(1) << 40}), "needs more than 2^48 bytes");
  EXPECT_MG_ERROR(Tensor::zeros({int64_t(1) << 62, 4}), "needs more than 2^48 bytes");
  EXPECT_MG_ERROR(Tensor::empty({3, -1}), "negative size");
  EXPECT_EQ(Tensor::empty({0, int64_t(1) << 62}).numel(), 0);
}
