// cpu_gemm: the one entry point of every CPU matrix product (matmul, the MoE
// experts' grouped products). It runs on the library chosen at configure time
// (MOEGRAD_BLAS in cmake/blas.cmake: OpenBLAS or BLIS through CBLAS, or Eigen),
// always on the calling thread: callers share out the work over OpenMP
// threads themselves (row blocks, experts), so a product's threads are
// moegrad's and results depend only on the thread count.
#pragma once
#include <cstdint>

namespace moegrad {

// One operand of a product: `p` points at element (0, 0) of a rows x cols
// matrix stored row by row with `ld` elements between rows, or, when
// `transposed`, stored column by column with `ld` between columns (the
// transpose of a row-major matrix, as in a backward's Wᵀ, read in place).
template <typename T>
struct GemmOperand {
  const T* p;
  int64_t ld;
  bool transposed;
};

// c[m, n] (row-major, `ldc` between rows) = a[m, k] · b[k, n], or
// c += a · b when `accumulate`. k may be 0 (c = 0, or unchanged).
template <typename T>
void cpu_gemm(int64_t m, int64_t n, int64_t k, GemmOperand<T> a, GemmOperand<T> b, T* c, int64_t ldc,
              bool accumulate);

// The library behind cpu_gemm, e.g. "OpenBLAS" or "Eigen".
const char* cpu_gemm_library();

}  // namespace moegrad
