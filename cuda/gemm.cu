// cuda_gemm (gemm.h) on cublas{S,D}gemmStridedBatched. cuBLAS is
// column-major: a row-major C [m, n] read column-major is Cᵀ, so the call
// computes Cᵀ = op(B)ᵀ·op(A)ᵀ with B as the first operand. A matrix X [r, c]
// stored row-major (unit column stride) reads column-major as Xᵀ with leading
// dim = its row stride (no transpose flag); stored column-major it reads as X
// with leading dim = its column stride (transpose flag). One cuBLAS handle per
// device and thread, on the default stream; cuBLAS gives bitwise-identical
// results run to run on one GPU model for a given toolkit.
#include <atomic>
#include <climits>
#include <vector>

#include "cuda/gemm.h"
#include "cuda/launch.cuh"

namespace moegrad {

namespace {

std::atomic<bool> g_allow_tf32{false};

cublasHandle_t handle_for(int device) {
  // never destroyed: a handle outliving its thread or the driver is harmless, destroying it late is not
  thread_local std::vector<cublasHandle_t> handles;
  if (static_cast<int>(handles.size()) <= device) handles.resize(device + 1, nullptr);
  if (!handles[device]) MG_CUBLAS_CHECK(cublasCreate(&handles[device]), " (on cuda:", device, ")");
  return handles[device];
}

// How cuBLAS reads one operand: transpose flag and leading dim.
struct Operand {
  cublasOperation_t op;
  int64_t ld;
};

// Matrix [rows, cols] with strides rs, cs; size-1 dims get the strides that
// make it row- or column-major, as in matmul.cpp.
Operand operand(const char* which, int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  if (rows <= 1) rs = cs == 1 ? std::max<int64_t>(cols, 1) : 1;
  if (cols <= 1) cs = rs == 1 ? std::max<int64_t>(rows, 1) : 1;
  if (cs == 1 && rs >= std::max<int64_t>(cols, 1)) return {CUBLAS_OP_N, rs};
  if (rs == 1 && cs >= std::max<int64_t>(rows, 1)) return {CUBLAS_OP_T, cs};
  throw Error(detail::cat("cuda_gemm: ", which, " [", rows, ", ", cols, "] with strides [", rs, ", ", cs,
                          "] is neither row- nor column-major; make it contiguous first"));
}

// The last two dims of t as a matrix, and its batch size and stride.
struct Matrix {
  int64_t batch, rows, cols, bs, rs, cs;
};

Matrix matrix_of(const Tensor& t) {
  const int64_t nd = t.dim();
  Matrix m{1, t.shape()[nd - 2], t.shape()[nd - 1], 0, t.strides()[nd - 2], t.strides()[nd - 1]};
  if (nd == 3) m.batch = t.shape()[0], m.bs = m.batch == 1 ? 0 : t.strides()[0];
  return m;
}

template <typename T>
__global__ void scale_kernel(T* c, T beta, cuda::Offsets<1> o, int64_t n) {
  MG_GRID_STRIDE(i, n) {
    int64_t off[1];
    o.at(i, off);
    c[off[0]] = beta == T(0) ? T(0) : beta * c[off[0]];
  }
}

void check_fits(int64_t v, const char* what) {
  MG_CHECK(v <= INT_MAX, "cuda_gemm: ", what, " ", v, " exceeds cuBLAS's int range");
}

}  // namespace

void cuda_set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool cuda_allow_tf32() { return g_allow_tf32; }

void cuda_gemm(const Tensor& a, const Tensor& b, const Tensor& c, double alpha, double beta) {
  const char* op = "cuda_gemm";
  MG_CHECK(a.defined() && b.defined() && c.defined(), op, ": an operand is an undefined tensor");
  MG_CHECK(c.device().is_cuda(), op, ": c is on ", c.device().str(), ", expected a CUDA device");
  MG_CHECK(a.device() == c.device() && b.device() == c.device(), op, ": devices differ: a ", a.device().str(),
           ", b ", b.device().str(), ", c ", c.device().str());
  MG_CHECK(is_floating(c.dtype()) && a.dtype() == c.dtype() && b.dtype() == c.dtype(), op,
           ": expected a, b, c all float32 or all float64, got ", dtype_name(a.dtype()), ", ", dtype_name(b.dtype()),
           ", ", dtype_name(c.dtype()));
  MG_CHECK((c.dim() == 2 || c.dim() == 3) && a.dim() == c.dim() && b.dim() == c.dim(), op,
           ": expected a, b, c all 2-d or all 3-d, got ", shape_str(a.shape()), ", ", shape_str(b.shape()), ", ",
           shape_str(c.shape()));
  Matrix A = matrix_of(a), B = matrix_of(b), C = matrix_of(c);
  MG_CHECK(A.rows == C.rows && B.cols == C.cols && A.cols == B.rows && (A.batch == C.batch || A.batch == 1) &&
               (B.batch == C.batch || B.batch == 1),
           op, ": shapes do not match c = a·b: a ", shape_str(a.shape()), ", b ", shape_str(b.shape()), ", c ",
           shape_str(c.shape()));
  const int64_t m = C.rows, n = C.cols, k = A.cols, batch = C.batch;
  MG_CHECK(n <= 1 || C.cs == 1, op, ": c must have unit stride in its last dim, got strides ",
           shape_str(c.strides()));
  MG_CHECK(batch <= 1 || C.bs != 0, op, ": c's batch dim has stride 0, so its matrices would overlap");
  if (m == 0 || n == 0 || batch == 0) return;
  cuda::DeviceGuard guard(c.device().index);
  if (k == 0) {  // an empty sum: c = beta · c
    cuda::Offsets<1> o = cuda::make_offsets<1>(c.shape(), {&c.strides()}, op);
    dispatch_float(c.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      scale_kernel<T><<<cuda::grid_for(c.numel()), cuda::kThreads>>>(c.data<T>(), static_cast<T>(beta), o,
                                                                     c.numel());
    });
    cuda::check_launch("scale_kernel");
    return;
  }
  const Operand oa = operand("a", A.rows, A.cols, A.rs, A.cs), ob = operand("b", B.rows, B.cols, B.rs, B.cs);
  const int64_t ldc = m <= 1 ? std::max<int64_t>(n, 1) : C.rs;
  MG_CHECK(ldc >= std::max<int64_t>(n, 1), op, ": c's rows overlap (row stride ", C.rs, " for ", n, " columns)");
  for (int64_t v : {m, n, k, batch}) check_fits(v, "size");
  for (int64_t v : {oa.ld, ob.ld, ldc}) check_fits(v, "leading dimension");
  cublasHandle_t h = handle_for(c.device().index);
  const std::string what = detail::cat(" (", shape_str(a.shape()), " x ", shape_str(b.shape()), " -> ",
                                       shape_str(c.shape()), ", ", dtype_name(c.dtype()), ")");
  if (c.dtype() == DType::Float32) {
    MG_CUBLAS_CHECK(cublasSetMathMode(h, g_allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    const float al = static_cast<float>(alpha), be = static_cast<float>(beta);
    cuda::check_status(
        cublasSgemmStridedBatched(h, ob.op, oa.op, int(n), int(m), int(k), &al, b.data<float>(), int(ob.ld), B.bs,
                                  a.data<float>(), int(oa.ld), A.bs, &be, c.data<float>(), int(ldc), C.bs,
                                  int(batch)),
        "cublasSgemmStridedBatched", what);
  } else {
    MG_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
    cuda::check_status(cublasDgemmStridedBatched(h, ob.op, oa.op, int(n), int(m), int(k), &alpha, b.data<double>(),
                                                 int(ob.ld), B.bs, a.data<double>(), int(oa.ld), A.bs, &beta,
                                                 c.data<double>(), int(ldc), C.bs, int(batch)),
                       "cublasDgemmStridedBatched", what);
  }
}

}  // namespace moegrad
