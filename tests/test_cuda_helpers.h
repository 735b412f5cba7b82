// Shared by the CUDA suites (tests/test_cuda_*.cpp): skipping when no GPU is
// visible, copies to the device, and the comparison of a device result with
// the CPU op it must match.
#pragma once
#include <cmath>

#include "tensor/backend.h"
#include "test_helpers.h"

// First statement of every CUDA test: skips (never passes silently) without a GPU.
#define MG_SKIP_WITHOUT_CUDA()                                                   \
  do {                                                                          \
    if (::moegrad::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device is visible"; \
  } while (0)

namespace moegrad::testing {

inline Tensor on_cuda(const Tensor& t) { return t.to(Device::cuda(0)); }

// Tolerances for device results against the CPU op: float64 to 1e-12
// relative (atol 1e-14 for results near zero: fused multiply-adds and a
// different summation order round differently), float32 to 1e-5 relative.
struct Tol {
  double rtol, atol;
};
inline Tol tol_for(DType dtype) { return dtype == DType::Float64 ? Tol{1e-12, 1e-14} : Tol{1e-5, 1e-6}; }

// |got - want| <= atol + rtol |want| elementwise (NaN matches NaN), same
// shape and dtype; got may be on any device.
inline void expect_close(const Tensor& got, const Tensor& want, Tol tol, const std::string& what = "") {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  ASSERT_EQ(got.dtype(), want.dtype()) << what;
  std::vector<double> g = got.to_vector(), w = want.to_vector();
  int64_t bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool ok = (std::isnan(g[i]) && std::isnan(w[i])) || g[i] == w[i] ||
                    std::fabs(g[i] - w[i]) <= tol.atol + tol.rtol * std::fabs(w[i]);
    if (!ok && bad++ < 5)
      ADD_FAILURE() << what << ": element " << i << " is " << g[i] << ", the CPU gives " << w[i] << " (diff "
                    << g[i] - w[i] << ")";
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size() << " elements out of tolerance";
}

inline void expect_close(const Tensor& got, const Tensor& want, const std::string& what = "") {
  expect_close(got, want, tol_for(want.dtype()), what);
}

// Results with a GEMM or a long dot product inside: the device and the CPU sum
// the products in different orders (cuBLAS's blocking and fused multiply-adds
// vs Eigen's), so they agree to float64 1e-12, float32 1e-4 (relative and
// absolute).
inline Tol gemm_tol(DType dtype) { return dtype == DType::Float64 ? Tol{1e-12, 1e-12} : Tol{1e-4, 1e-4}; }

// x's values on the device, strided there (the first two dims' storage
// transposed) when x is not contiguous, so kernels see both kinds of layout.
inline Tensor on_cuda_like(const Tensor& x) {
  if (x.is_contiguous() || x.dim() < 2) return on_cuda(x);
  return transpose(contiguous(transpose(on_cuda(x), 0, 1)), 0, 1);
}

// Uniform values in [low, high) of the given dtype on the CPU.
inline Tensor uniform(const Shape& shape, DType dtype, uint64_t seed, double low = -2.0, double high = 2.0) {
  Generator gen(seed);
  return Tensor::rand(shape, low, high, dtype, &gen);
}

}  // namespace moegrad::testing
