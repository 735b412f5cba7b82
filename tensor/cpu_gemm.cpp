// cpu_gemm on the library chosen at configure time: a CBLAS library (OpenBLAS
// or BLIS, MOEGRAD_BLAS_CBLAS) set to one thread, or Eigen, which is also the
// path for sizes past CBLAS's 32-bit integers.
#include "tensor/cpu_gemm.h"

#include <omp.h>

#include <Eigen/Core>
#include <algorithm>
#include <limits>

#if defined(MOEGRAD_BLAS_OPENBLAS) || defined(MOEGRAD_BLAS_BLIS)
#define MOEGRAD_BLAS_CBLAS 1
#include <cblas.h>
#endif
#ifdef MOEGRAD_BLAS_BLIS
#include <blis.h>
#endif

namespace moegrad {

namespace {

template <typename T, int Order>
using Map = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Order>, 0, Eigen::OuterStride<>>;
template <typename T>
using OutMap = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;

// Eigen sizes its cache blocks from the L3 size the CPU reports; a VM reports
// the host's whole L3 (320 MiB on 2-core Zen 4 machines), far more than a
// GEMM can count on. Capped at 16 MiB: 2048² float GEMM on 2 threads 120 -> 112 ms.
// One thread per product: the callers share out the threads.
void set_up_eigen() {
  static const bool done = [] {
    Eigen::setNbThreads(1);
    std::ptrdiff_t l1, l2, l3;
    Eigen::internal::manage_caching_sizes(Eigen::GetAction, &l1, &l2, &l3);
    Eigen::setCpuCacheSizes(l1, l2, std::min<std::ptrdiff_t>(l3, 16 << 20));
    return true;
  }();
  (void)done;
}

template <typename T, typename A, typename B>
void eigen_product(const A& a, const B& b, T* c, int64_t m, int64_t n, int64_t ldc, bool accumulate) {
  OutMap<T> out(c, m, n, Eigen::OuterStride<>(ldc));
  if (accumulate)
    out.noalias() += a * b;
  else
    out.noalias() = a * b;
}

template <typename T>
void eigen_gemm(int64_t m, int64_t n, int64_t k, GemmOperand<T> a, GemmOperand<T> b, T* c, int64_t ldc,
                bool accumulate) {
  set_up_eigen();
  const Eigen::OuterStride<> sa(a.ld), sb(b.ld);
  if (!a.transposed) {
    Map<T, Eigen::RowMajor> am(a.p, m, k, sa);
    if (!b.transposed) return eigen_product<T>(am, Map<T, Eigen::RowMajor>(b.p, k, n, sb), c, m, n, ldc, accumulate);
    return eigen_product<T>(am, Map<T, Eigen::ColMajor>(b.p, k, n, sb), c, m, n, ldc, accumulate);
  }
  Map<T, Eigen::ColMajor> am(a.p, m, k, sa);
  if (!b.transposed) return eigen_product<T>(am, Map<T, Eigen::RowMajor>(b.p, k, n, sb), c, m, n, ldc, accumulate);
  return eigen_product<T>(am, Map<T, Eigen::ColMajor>(b.p, k, n, sb), c, m, n, ldc, accumulate);
}

#ifdef MOEGRAD_BLAS_CBLAS
// One thread per call: moegrad's callers run products inside their own
// parallel regions, and a library threading them again would oversubscribe
// the cores (the pthread builds) or split small products too finely.
void set_blas_threads() {
  static const bool done = [] {
#ifdef MOEGRAD_BLAS_OPENBLAS
    // OpenBLAS's OpenMP build also sets OpenMP's thread count here: restore it
    const int threads = omp_get_max_threads();
    openblas_set_num_threads(1);
    omp_set_num_threads(threads);
#else
    bli_thread_set_num_threads(1);
#endif
    return true;
  }();
  (void)done;
}

bool fits_cblas(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc) {
  const int64_t most = std::numeric_limits<int>::max();
  return std::max({m, n, k, lda, ldb, ldc}) <= most;
}

void cblas_product(int m, int n, int k, CBLAS_TRANSPOSE ta, const float* a, int lda, CBLAS_TRANSPOSE tb,
                   const float* b, int ldb, float beta, float* c, int ldc) {
  cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
}
void cblas_product(int m, int n, int k, CBLAS_TRANSPOSE ta, const double* a, int lda, CBLAS_TRANSPOSE tb,
                   const double* b, int ldb, double beta, double* c, int ldc) {
  cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc);
}
#endif

}  // namespace

template <typename T>
void cpu_gemm(int64_t m, int64_t n, int64_t k, GemmOperand<T> a, GemmOperand<T> b, T* c, int64_t ldc,
              bool accumulate) {
  if (m == 0 || n == 0) return;
#ifdef MOEGRAD_BLAS_CBLAS
  // CBLAS wants every leading dimension at least 1 and at least the stored
  // row (column) length, even where a dimension is 0 or 1.
  const int64_t lda = std::max<int64_t>({a.ld, a.transposed ? m : k, 1});
  const int64_t ldb = std::max<int64_t>({b.ld, b.transposed ? k : n, 1});
  if (fits_cblas(m, n, k, lda, ldb, ldc)) {
    set_blas_threads();
    cblas_product(static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                  a.transposed ? CblasTrans : CblasNoTrans, a.p, static_cast<int>(lda),
                  b.transposed ? CblasTrans : CblasNoTrans, b.p, static_cast<int>(ldb), accumulate ? T(1) : T(0), c,
                  static_cast<int>(ldc));
    return;
  }
#endif
  eigen_gemm(m, n, k, a, b, c, ldc, accumulate);
}

template void cpu_gemm<float>(int64_t, int64_t, int64_t, GemmOperand<float>, GemmOperand<float>, float*, int64_t,
                              bool);
template void cpu_gemm<double>(int64_t, int64_t, int64_t, GemmOperand<double>, GemmOperand<double>, double*,
                               int64_t, bool);

const char* cpu_gemm_library() {
#if defined(MOEGRAD_BLAS_OPENBLAS)
  return "OpenBLAS";
#elif defined(MOEGRAD_BLAS_BLIS)
  return "BLIS";
#else
  return "Eigen";
#endif
}

}  // namespace moegrad
