// Shared by the CUDA suites (tests/*/test_cuda_*.cpp): what to do when no GPU
// is usable, copies to the device, and the comparison of a device result with
// the CPU op it must match.
#pragma once
#include <cmath>
#include <cstdlib>
#include <string>

#include "tensor/backend.h"
#include "test_helpers.h"
#ifdef MOEGRAD_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace moegrad::testing {

// MOEGRAD_REQUIRE_CUDA set to anything but "" or "0": a CUDA test fails when
// no device is usable instead of skipping (the GPU verification sets it, so a
// machine whose GPU cannot be used never passes as "all skipped").
inline bool cuda_required() {
  const char* v = std::getenv("MOEGRAD_REQUIRE_CUDA");
  return v && *v && std::string(v) != "0";
}

// "CUDA 12.8" for the version number the CUDA runtime reports (12080).
inline std::string cuda_version_str(int v) {
  return "CUDA " + std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10);
}

// Why no CUDA device is visible: what cudaGetDeviceCount reports, and the
// driver's and this build's runtime's CUDA versions. Only called when
// cuda_device_count() is 0.
inline std::string why_no_cuda_device() {
#ifdef MOEGRAD_WITH_CUDA
  int n = 0, driver = 0, runtime = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  cudaGetLastError();
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  std::string why = "no CUDA device is visible: cudaGetDeviceCount gives " + std::string(cudaGetErrorName(status)) +
                    " (" + cudaGetErrorString(status) + "); ";
  if (driver == 0)
    why += "no NVIDIA driver is loaded (libcuda.so.1 is missing or this machine has no GPU), and this build's "
           "runtime is " + cuda_version_str(runtime);
  else if (driver < runtime)
    why += "the driver supports up to " + cuda_version_str(driver) + " but this build's runtime is " +
           cuda_version_str(runtime) + ": the driver is too old for it";
  else
    why += "driver " + cuda_version_str(driver) + ", runtime " + cuda_version_str(runtime);
  if (const char* visible = std::getenv("CUDA_VISIBLE_DEVICES"))
    why += std::string("; CUDA_VISIBLE_DEVICES is '") + visible + "'";
  return why;
#else
  return "this moegrad was built without the CUDA backend";
#endif
}

// Whether cuda:0 can run kernels: "" when it can, else why not. Without a
// visible device, why_no_cuda_device(); with one, the Error of a fill kernel
// and a copy back (a build without code for this GPU fails here).
struct CudaStatus {
  bool visible;
  std::string problem;
};
inline const CudaStatus& cuda_status() {
  static const CudaStatus status = []() -> CudaStatus {
    if (cuda_device_count() == 0) return {false, why_no_cuda_device()};
    try {
      const std::vector<double> v = Tensor::full({3}, 2.0, DType::Float32, Device::cuda(0)).to_vector();
      if (v != std::vector<double>{2, 2, 2}) return {true, "cuda:0 filled a tensor with 2 and read back other values"};
    } catch (const Error& e) {
      return {true, std::string("cuda:0 is visible but cannot run a kernel: ") + e.what()};
    }
    return {true, ""};
  }();
  return status;
}

}  // namespace moegrad::testing

// First statement of every CUDA test. Without a visible device it skips (never
// passes silently), or fails when MOEGRAD_REQUIRE_CUDA is set; a visible device
// that cannot run a kernel always fails. Either way the message says why.
#define MG_SKIP_WITHOUT_CUDA()                                                                    \
  do {                                                                                           \
    const ::moegrad::testing::CudaStatus& mg_cuda_ = ::moegrad::testing::cuda_status();         \
    if (mg_cuda_.problem.empty()) break;                                                         \
    if (mg_cuda_.visible || ::moegrad::testing::cuda_required())                                 \
      FAIL() << "no usable CUDA device" << (mg_cuda_.visible ? "" : " (MOEGRAD_REQUIRE_CUDA is set)") << ": " \
             << mg_cuda_.problem;                                                                \
    GTEST_SKIP() << mg_cuda_.problem;                                                            \
  } while (0)

// First statement of a test of what happens on a machine without a GPU: skips
// where one is visible (the GPU verification runs these with
// CUDA_VISIBLE_DEVICES= , which hides every device). Their suites are named
// WithoutCuda..., so that "Cuda*" selects the tests that need a device.
#define MG_SKIP_WITH_CUDA()                                                                       \
  do {                                                                                           \
    if (::moegrad::cuda_device_count() > 0) GTEST_SKIP() << "a CUDA device is visible";          \
  } while (0)

namespace moegrad::testing {

inline Tensor on_cuda(const Tensor& t) { return t.to(Device::cuda(0)); }

// Tolerances for device results against the CPU op: float64 to 1e-12
// relative with atol 1e-14 for results near zero, float32 to 1e-5 relative.
// The two sides may round differently in two ways: the order of a sum (a tree
// on the device, a loop on the CPU), and fused multiply-adds. GCC contracts
// a·b + c into one FMA by default in C++ (-ffp-contract=fast) wherever the
// target has FMA (-march=native, x86-64-v3), so the CPU op may fuse a product
// that the device rounds by itself (cuda::mul_rn, where a difference
// cancels) or the other way round. Either moves a result by at most about
// half an ulp of the largest term of its sum or difference (1.1e-16 of it),
// times any factor applied afterwards: atol 1e-14 covers terms up to ~50 with
// factors ~1. A test whose terms or factors are larger says so and states its
// own tolerance.
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
