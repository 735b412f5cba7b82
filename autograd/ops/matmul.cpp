// matmul: 2-d GEMM and batched GEMM with broadcast batch dimensions, on
// cpu_gemm (tensor/cpu_gemm.h: OpenBLAS, BLIS or Eigen, chosen at configure time).
// Operands are mapped in place when their last two dims are row-major or
// column-major with unit inner stride (so transposed views used in backward
// cost no copy). [..., m, k] x [k, n] with a contiguous left operand becomes
// one [B*m, k] x [k, n] GEMM. CUDA tensors go to cuBLAS (cuda/gemm.h), the
// batch dims flattened into one stride where they allow it. Backward: dA = dC Bᵀ, dB = Aᵀ dC, each summed
// over the batch dims that were broadcast.
#include <omp.h>

#include <algorithm>

#include "autograd/ops/util.h"
#include "tensor/cpu_gemm.h"
#include "tensor/strided.h"
#include "cuda/gemm.h"

namespace moegrad {

namespace {

// A matrix operand: base pointer and the strides of its two dims.
template <typename T>
struct Mat {
  const T* p;
  int64_t rows, cols, rs, cs;
  bool row_major() const { return cs == 1 && rs >= std::max<int64_t>(cols, 1); }
  bool col_major() const { return rs == 1 && cs >= std::max<int64_t>(rows, 1); }
};

// Size-1 dims have meaningless strides: pick ones that make the layout
// row- or column-major where possible.
template <typename T>
Mat<T> fix_degenerate(Mat<T> x) {
  if (x.rows <= 1) x.rs = x.cs == 1 ? std::max<int64_t>(x.cols, 1) : 1;
  if (x.cols <= 1) x.cs = x.rs == 1 ? std::max<int64_t>(x.rows, 1) : 1;
  return x;
}

// Products of at least this many multiply-adds are split by rows of C over
// the threads, each block one single-threaded cpu_gemm (tensor/cpu_gemm.h):
// on 2 cores this beat the libraries' own threading at every size measured
// (float32 square, 128 to 2048, Eigen and OpenBLAS alike).
constexpr int64_t kRowSplitWork = int64_t{1} << 20;

template <typename T>
GemmOperand<T> operand(const Mat<T>& x) {
  return x.row_major() ? GemmOperand<T>{x.p, x.rs, false} : GemmOperand<T>{x.p, x.cs, true};
}

// c [a.rows, b.cols] = a · b, both operands row- or column-major.
template <typename T>
void gemm(const Mat<T>& a, const Mat<T>& b, T* c) {
  const int64_t m = a.rows, n = b.cols, k = a.cols;
  const GemmOperand<T> ao = operand(a), bo = operand(b);
  if (m * n * k >= kRowSplitWork && !omp_in_parallel() && omp_get_max_threads() > 1) {
    parallel_for(m, 64, [&](int64_t r0, int64_t r1) {
      const GemmOperand<T> rows{ao.p + r0 * (ao.transposed ? 1 : ao.ld), ao.ld, ao.transposed};
      cpu_gemm(r1 - r0, n, k, rows, bo, c + r0 * n, n, false);
    });
    return;
  }
  cpu_gemm(m, n, k, ao, bo, c, n, false);
}

// A copy of t when its last two dims are neither row- nor column-major.
Tensor mappable(const Tensor& t) {
  const int64_t nd = t.dim();
  Mat<float> m = fix_degenerate(Mat<float>{nullptr, t.shape()[nd - 2], t.shape()[nd - 1], t.strides()[nd - 2],
                                            t.strides()[nd - 1]});
  return m.row_major() || m.col_major() ? t : contiguous(t).detach();
}

// A [batch..., r, c] operand as a [nbatch, r, c] view with one batch stride
// (0 where it broadcasts), or, when its batch dims cannot be flattened into
// one stride, a contiguous copy of its broadcast. Used only by the CUDA path
// (a CPU-only build names it in an unevaluated context alone).
[[maybe_unused]] Tensor as_batched(const Tensor& t, const Shape& batch) {
  const int64_t nd = t.dim(), r = t.shape()[nd - 2], c = t.shape()[nd - 1], nbatch = shape_numel(batch);
  const Shape tb(t.shape().begin(), t.shape().end() - 2);
  const Shape bs = broadcast_strides(tb, Shape(t.strides().begin(), t.strides().end() - 2), batch);
  int64_t stride = 0, expect = -1;
  bool flat = true;
  for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0 && flat; --d) {
    if (batch[d] == 1) continue;
    if (expect >= 0 && bs[d] != expect) flat = false;
    if (expect < 0) stride = bs[d];
    expect = bs[d] * batch[d];
  }
  if (flat) return t.as_strided({nbatch, r, c}, {stride, t.strides()[nd - 2], t.strides()[nd - 1]}, t.offset());
  Shape full = batch;
  full.push_back(r);
  full.push_back(c);
  Tensor copy = contiguous(expand(t, full));
  return copy.as_strided({nbatch, r, c}, {r * c, c, 1}, copy.offset());
}

// out [batch..., m, n] = a · b on a CUDA device, through cuBLAS (cuda/gemm.h).
void matmul_cuda(const Tensor& a_in, const Tensor& b_in, const Shape& batch, const Tensor& out) {
  NoGradGuard no_grad;  // the copies below are not part of the graph
  Tensor a = mappable(a_in.detach()), b = mappable(b_in.detach());
  const int64_t m = out.shape()[out.dim() - 2], n = out.shape().back();
  if (batch.empty()) return MOEGRAD_CUDA(cuda_gemm(a, b, out));
  MOEGRAD_CUDA(cuda_gemm(as_batched(a, batch), as_batched(b, batch),
                         out.as_strided({shape_numel(batch), m, n}, {m * n, n, 1}, 0)));
}

// Batched product of a [..., m, k] and b [..., k, n] (both >= 2-d).
Tensor matmul_nd(const Tensor& a_in, const Tensor& b_in) {
  const int64_t k = a_in.shape().back();
  MG_CHECK(b_in.shape()[b_in.dim() - 2] == k, "matmul: inner dimensions differ: ", shape_str(a_in.shape()), " x ",
           shape_str(b_in.shape()));
  const int64_t m = a_in.shape()[a_in.dim() - 2], n = b_in.shape().back();
  Shape a_batch(a_in.shape().begin(), a_in.shape().end() - 2);
  Shape b_batch(b_in.shape().begin(), b_in.shape().end() - 2);
  Shape batch = broadcast_shapes(a_batch, b_batch, "matmul");
  Shape out_shape = batch;
  out_shape.push_back(m);
  out_shape.push_back(n);
  Tensor out = Tensor::empty(out_shape, a_in.dtype(), a_in.device());
  if (out.numel() == 0) return out;
  if (k == 0) {
    out.fill_(0.0);
    return out;
  }
  if (out.device().is_cuda()) {
    matmul_cuda(a_in, b_in, batch, out);
    return out;
  }

  // [..., m, k] x [k, n] with a row-major-collapsible left operand: one GEMM
  if (b_in.dim() == 2 && a_in.is_contiguous()) {
    Tensor b = mappable(b_in);
    dispatch_float(a_in.dtype(), "matmul", [&](auto tag) {
      using T = typename decltype(tag)::type;
      const int64_t rows = a_in.numel() / k;
      Mat<T> am{a_in.data<T>(), rows, k, k, 1};
      Mat<T> bm{b.data<T>(), k, n, b.strides()[0], b.strides()[1]};
      gemm(fix_degenerate(am), fix_degenerate(bm), out.data<T>());
    });
    return out;
  }

  Tensor a = mappable(a_in), b = mappable(b_in);
  Shape a_bs = broadcast_strides(a_batch, Shape(a.strides().begin(), a.strides().end() - 2), batch);
  Shape b_bs = broadcast_strides(b_batch, Shape(b.strides().begin(), b.strides().end() - 2), batch);
  const int64_t nbatch = shape_numel(batch);
  dispatch_float(a.dtype(), "matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* cp = out.data<T>();
    auto one = [&](int64_t i) {
      int64_t ao = 0, bo = 0, rem = i;
      for (int64_t d = static_cast<int64_t>(batch.size()) - 1; d >= 0; --d) {
        int64_t idx = rem % batch[d];
        rem /= batch[d];
        ao += idx * a_bs[d];
        bo += idx * b_bs[d];
      }
      Mat<T> am{ap + ao, m, k, a.strides()[a.dim() - 2], a.strides()[a.dim() - 1]};
      Mat<T> bm{bp + bo, k, n, b.strides()[b.dim() - 2], b.strides()[b.dim() - 1]};
      gemm(fix_degenerate(am), fix_degenerate(bm), cp + i * m * n);
    };
    // many small products: one per thread; few large ones: each split by rows (gemm)
    if (nbatch > 1 && m * n * k < (1 << 22)) {
      // grain: enough products per thread to cover the cost of waking threads
      parallel_for(nbatch, grain_for(m * n * k),
                   [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; ++i) one(i);
      });
    } else {
      for (int64_t i = 0; i < nbatch; ++i) one(i);
    }
  });
  return out;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  check_float(a, "matmul", "first operand");
  check_float(b, "matmul", "second operand");
  check_same_type(a, b, "matmul");
  MG_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: operands must be at least 1-d, got ", shape_str(a.shape()), " x ",
           shape_str(b.shape()));
  // NumPy promotion of 1-d operands (through differentiable reshapes)
  if (a.dim() == 1 || b.dim() == 1) {
    Tensor c = matmul(a.dim() == 1 ? unsqueeze(a, 0) : a, b.dim() == 1 ? unsqueeze(b, 1) : b);
    if (b.dim() == 1) c = squeeze(c, -1);
    if (a.dim() == 1) c = squeeze(c, b.dim() == 1 ? -1 : -2);
    return c;
  }
  Tensor out = matmul_nd(a, b);
  Tensor ad = a.detach(), bd = b.detach();
  attach_backward(out, "matmul", {a, b}, [ad, bd, a_req = a.requires_grad(), b_req = b.requires_grad()](
                                             const Tensor& dout) {
    Tensor da, db;
    if (a_req) da = sum_to(matmul(dout, transpose(bd, -1, -2)), ad.shape());
    if (b_req) db = sum_to(matmul(transpose(ad, -1, -2), dout), bd.shape());
    return std::vector<Tensor>{da, db};
  });
  return out;
}

}  // namespace moegrad
