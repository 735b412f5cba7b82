// fused_attention: softmax(scale · q kᵀ, causal mask) v without building the
// [T, S] score matrix of the whole sequence. Per (sample, head) the queries
// go in blocks of kBlock rows; a block's scores exist only for the keys it may
// see (under a causal mask the keys up to its last row, so about half of the
// products of the plain path are never computed), in a scratch buffer of
// kBlock × S. The forward saves only the output and each row's log-sum-exp;
// the backward recomputes the probabilities block by block (as
// FlashAttention does):
//   P = exp(scale · q kᵀ − lse),  D_t = Σ_d dO_td O_td,
//   dV += Pᵀ dO,  dP = dO Vᵀ,  dS = P ⊙ (dP − D) · scale,  dQ = dS K,  dK += dSᵀ Q.
// Dropout on the probabilities (as FlashAttention does it): the mask Z of
// dropout() over the [B, H, T, S] probabilities (0 or 1/(1-p), from the
// counters of each (b, h, t, s) in row-major order) is drawn again where it
// is needed, never stored. With Pd = P ⊙ Z:
//   O = Pd v,  dV += Pdᵀ dO,  dP = (dO Vᵀ) ⊙ Z,  and D_t = Σ_s Pd dPd = Σ_d dO_td O_td still.
// The kernels read and write strided rows in place (Layout), so the
// attention module hands them its packed qkv projection [B, T, 3·dim] and
// gets [B, T, dim] back (fused_self_attention): no copies of q, k, v, no
// head permutes, one packed dqkv in the backward.
// The block products go through cpu_gemm (the configured BLAS, on the
// calling thread); the row work (max, exp, sums) stays with Eigen.
// Parallel over (sample, head): each thread owns whole rows of dK and dV, so
// the result does not depend on the thread count.
// CUDA tensors take the same layouts to the tiled kernels of
// cuda/flash_attention.cu (deterministic as well: no atomics).
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "autograd/ops/util.h"
#include "cuda/flash_attention.h"
#include "nn/attention.h"
#include "tensor/cpu_gemm.h"
#include "tensor/parallel.h"
#include "tensor/random.h"

namespace moegrad {

namespace {

constexpr int64_t kBlock = 32;

// Scratch with Eigen's alignment: its reductions (max, sum) peel by address,
// so a buffer at an arbitrary address would change the summation order.
template <typename T>
using Scratch = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
using Mat = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <typename T>
using RowsOf = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;
template <typename T>
using CRowsOf =
    Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0, Eigen::OuterStride<>>;

// Where head (b, h)'s rows of a logical [B, H, rows, Dh] operand lie, in
// elements from its base pointer; the Dh elements of a row are adjacent.
struct Layout {
  int64_t batch, head, row;
  int64_t at(int64_t b, int64_t h) const { return b * batch + h * head; }
};

struct Dims {
  int64_t nb, nh, nt, ns, dh;  // samples, heads, queries, keys, head width
  bool causal;
  double scale;
  // dropout on the probabilities: p > 0, counters from `first` (see attend)
  double drop_p = 0;
  uint64_t drop_seed = 0, drop_first = 0;
  // Keys visible to query t (causal: t + (S - T) + 1 of them).
  int64_t kept(int64_t t) const { return causal ? std::min(ns, t + ns - nt + 1) : ns; }
  bool dropout() const { return drop_p > 0; }
  // z[s] = the dropout factor Z (1/(1-p) or 0) of query t's key s in head bh,
  // for s < n: one vectorised pass of the counter hash.
  template <typename T>
  void drop_factors(T* z, int64_t n, int64_t bh, int64_t t) const {
    const uint64_t base = drop_first + static_cast<uint64_t>((bh * nt + t) * ns), threshold = dropout_threshold(drop_p);
    const uint64_t seed = drop_seed;
    const T kept = static_cast<T>(dropout_scale(drop_p));
    for (int64_t s = 0; s < n; ++s)
      z[s] = dropout_keeps_bits(seed, base + static_cast<uint64_t>(s), threshold) ? kept : T(0);
  }
};

template <typename T>
struct Operand {
  T* p;
  Layout l;
  // rows [r0, r0 + n) of head (b, h)
  auto rows(int64_t b, int64_t h, int64_t r0, int64_t n, int64_t dh) const {
    using M = std::conditional_t<std::is_const_v<T>, CRowsOf<std::remove_const_t<T>>, RowsOf<T>>;
    return M(at(b, h, r0), n, dh, Eigen::OuterStride<>(l.row));
  }
  T* at(int64_t b, int64_t h, int64_t r0) const { return p + l.at(b, h) + r0 * l.row; }
  // rows from r0 of head (b, h) as a product's operand, read as stored or transposed
  GemmOperand<std::remove_const_t<T>> gemm(int64_t b, int64_t h, int64_t r0, bool transposed) const {
    return {at(b, h, r0), l.row, transposed};
  }
};

// A block's [rows, keys] scratch (rows stored one after the other) as a product's operand.
template <typename T>
GemmOperand<T> block(const Mat<T>& m, bool transposed) {
  return {m.data(), m.cols(), transposed};
}

template <typename T>
void forward_kernel(const Dims& d, Operand<const T> q, Operand<const T> k, Operand<const T> v, Operand<T> o, T* lse) {
  parallel_for(d.nb * d.nh, 1, [&](int64_t s, int64_t e) {
    Scratch<T> scratch(kBlock * d.ns), z(d.dropout() ? d.ns : 0);
    for (int64_t bh = s; bh < e; ++bh) {
      const int64_t b = bh / d.nh, h = bh % d.nh;
      for (int64_t t0 = 0; t0 < d.nt; t0 += kBlock) {
        const int64_t rows = std::min(kBlock, d.nt - t0), keys = d.kept(t0 + rows - 1);
        Mat<T> S(scratch.data(), rows, keys);
        // S = q kᵀ, scaled row by row below
        cpu_gemm(rows, keys, d.dh, q.gemm(b, h, t0, false), k.gemm(b, h, 0, true), S.data(), keys, false);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t n = d.kept(t0 + r);
          auto row = S.row(r);
          row.head(n) *= static_cast<T>(d.scale);
          const T m = row.head(n).maxCoeff();
          row.head(n) = (row.head(n).array() - m).exp();
          const T sum = row.head(n).sum();
          row.head(n) /= sum;
          row.tail(keys - n).setZero();
          lse[bh * d.nt + t0 + r] = m + std::log(sum);
          if (d.dropout()) {
            d.drop_factors(z.data(), n, bh, t0 + r);
            row.head(n).array() *= z.head(n).transpose().array();
          }
        }
        // O = P v (P ⊙ Z under dropout)
        cpu_gemm(rows, d.dh, keys, block(S, false), v.gemm(b, h, 0, false), o.at(b, h, t0), o.l.row, false);
      }
    }
  });
}

template <typename T>
void backward_kernel(const Dims& d, Operand<const T> q, Operand<const T> k, Operand<const T> v, Operand<const T> o,
                     const T* lse, Operand<const T> dout, Operand<T> dq, Operand<T> dk, Operand<T> dv) {
  parallel_for(d.nb * d.nh, 1, [&](int64_t s, int64_t e) {
    Scratch<T> p_buf(kBlock * d.ns), dp_buf(kBlock * d.ns), z(d.dropout() ? d.ns : 0);
    for (int64_t bh = s; bh < e; ++bh) {
      const int64_t b = bh / d.nh, h = bh % d.nh;
      dk.rows(b, h, 0, d.ns, d.dh).setZero(), dv.rows(b, h, 0, d.ns, d.dh).setZero();
      for (int64_t t0 = 0; t0 < d.nt; t0 += kBlock) {
        const int64_t rows = std::min(kBlock, d.nt - t0), keys = d.kept(t0 + rows - 1);
        auto O = o.rows(b, h, t0, rows, d.dh), dO = dout.rows(b, h, t0, rows, d.dh);
        Mat<T> P(p_buf.data(), rows, keys), dP(dp_buf.data(), rows, keys);
        // P = q kᵀ (scaled and exponentiated below), dP = dO vᵀ
        cpu_gemm(rows, keys, d.dh, q.gemm(b, h, t0, false), k.gemm(b, h, 0, true), P.data(), keys, false);
        cpu_gemm(rows, keys, d.dh, dout.gemm(b, h, t0, false), v.gemm(b, h, 0, true), dP.data(), keys, false);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t n = d.kept(t0 + r);
          const T D = dO.row(r).dot(O.row(r));
          auto pr = P.row(r);
          pr.head(n) = (pr.head(n).array() * static_cast<T>(d.scale) - lse[bh * d.nt + t0 + r]).exp();
          pr.tail(keys - n).setZero();
          // under dropout dP is the gradient of P ⊙ Z: P's is dP ⊙ Z
          if (d.dropout()) {
            d.drop_factors(z.data(), n, bh, t0 + r);
            dP.row(r).head(n).array() *= z.head(n).transpose().array();
          }
          // dP becomes dS = P ⊙ (dP − D) · scale (0 where masked, as P is)
          dP.row(r).array() = pr.array() * (dP.row(r).array() - D) * static_cast<T>(d.scale);
          if (d.dropout()) pr.head(n).array() *= z.head(n).transpose().array();  // P ⊙ Z, for dV
        }
        // dV += Pᵀ dO, dQ = dS k, dK += dSᵀ q (P ⊙ Z under dropout)
        cpu_gemm(keys, d.dh, rows, block(P, true), dout.gemm(b, h, t0, false), dv.at(b, h, 0), dv.l.row, true);
        cpu_gemm(rows, d.dh, keys, block(dP, false), k.gemm(b, h, 0, false), dq.at(b, h, t0), dq.l.row, false);
        cpu_gemm(keys, d.dh, rows, block(dP, true), q.gemm(b, h, t0, false), dk.at(b, h, 0), dk.l.row, true);
      }
    }
  });
}

// The saved operands of one call: tensors (kept alive) and where q, k, v,
// the output and the gradients lie in them.
struct Saved {
  Tensor qs, ks, vs, out;  // q's, k's, v's storage views (may be one tensor) and the output
  Layout lq, lk, lv, lo;
  int64_t q0 = 0, k0 = 0, v0 = 0;  // element offsets of q, k, v in their tensors
};

template <typename T>
Operand<const T> cop(const Tensor& t, int64_t off, Layout l) {
  return {t.data<T>() + off, l};
}

// The CUDA kernels' arguments ([[maybe_unused]]: a CPU-only build names them
// inside MOEGRAD_CUDA, which does not evaluate its call).
[[maybe_unused]] CudaAttentionDims cuda_dims(const Dims& d) {
  return {d.nb, d.nh, d.nt, d.ns, d.dh, d.causal, d.scale, d.drop_p, d.drop_seed, d.drop_first};
}
[[maybe_unused]] CudaAttentionRows cuda_rows(const Tensor& t, int64_t off, Layout l) { return {t, off, l.batch, l.head, l.row}; }

void run_forward(const Dims& d, const Saved& s, Tensor& lse) {
  if (s.out.device().is_cuda())
    return MOEGRAD_CUDA(cuda_flash_attention(cuda_dims(d), cuda_rows(s.qs, s.q0, s.lq), cuda_rows(s.ks, s.k0, s.lk),
                                             cuda_rows(s.vs, s.v0, s.lv), cuda_rows(s.out, 0, s.lo), lse));
  dispatch_float(s.out.dtype(), "fused_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    forward_kernel<T>(d, cop<T>(s.qs, s.q0, s.lq), cop<T>(s.ks, s.k0, s.lk), cop<T>(s.vs, s.v0, s.lv),
                      Operand<T>{s.out.data<T>(), s.lo}, lse.data<T>());
  });
}

// dq, dk, dv with their offsets and layouts (dq, dk, dv may be one tensor).
struct Grads {
  Tensor dq, dk, dv;
  Layout lq, lk, lv;
  int64_t q0 = 0, k0 = 0, v0 = 0;
};

void run_backward(const Dims& d, const Saved& s, const Tensor& lse, const Tensor& dout, Layout ldo, Grads& g) {
  if (s.out.device().is_cuda())
    return MOEGRAD_CUDA(cuda_flash_attention_backward(
        cuda_dims(d), cuda_rows(s.qs, s.q0, s.lq), cuda_rows(s.ks, s.k0, s.lk), cuda_rows(s.vs, s.v0, s.lv),
        cuda_rows(s.out, 0, s.lo), lse, cuda_rows(dout, 0, ldo), cuda_rows(g.dq, g.q0, g.lq),
        cuda_rows(g.dk, g.k0, g.lk), cuda_rows(g.dv, g.v0, g.lv)));
  dispatch_float(s.out.dtype(), "fused_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    backward_kernel<T>(d, cop<T>(s.qs, s.q0, s.lq), cop<T>(s.ks, s.k0, s.lk), cop<T>(s.vs, s.v0, s.lv),
                       cop<T>(s.out, 0, s.lo), lse.data<T>(), cop<T>(dout, 0, ldo),
                       Operand<T>{g.dq.data<T>() + g.q0, g.lq}, Operand<T>{g.dk.data<T>() + g.k0, g.lk},
                       Operand<T>{g.dv.data<T>() + g.v0, g.lv});
  });
}

// Layout of a [B, H, rows, Dh] tensor from its strides.
Layout layout_of(const Tensor& t) { return {t.strides()[0], t.strides()[1], t.strides()[2]}; }
Layout contiguous_layout(int64_t nh, int64_t rows, int64_t dh) { return {nh * rows * dh, rows * dh, dh}; }

// Backward of both entry points: packed (fused_self_attention) returns one
// dqkv laid out as the input; otherwise dq, dk, dv [B, H, rows, Dh].
struct FusedAttentionBackward : Node {
  Dims dims;
  Saved saved;
  Tensor lse;
  bool packed = false;
  const char* name() const override { return packed ? "fused_self_attention" : "fused_attention"; }
  std::vector<Tensor> backward(const Tensor& dout_in) override {
    Tensor dout = contiguous(dout_in);
    Grads g;
    if (packed) {
      g.dq = g.dk = g.dv = Tensor::empty(saved.qs.shape(), lse.dtype(), lse.device());
      g.lq = g.lk = g.lv = saved.lq;
      g.q0 = saved.q0, g.k0 = saved.k0, g.v0 = saved.v0;
    } else {
      g.dq = Tensor::empty({dims.nb, dims.nh, dims.nt, dims.dh}, lse.dtype(), lse.device());
      g.dk = Tensor::empty({dims.nb, dims.nh, dims.ns, dims.dh}, lse.dtype(), lse.device());
      g.dv = Tensor::empty({dims.nb, dims.nh, dims.ns, dims.dh}, lse.dtype(), lse.device());
      g.lq = contiguous_layout(dims.nh, dims.nt, dims.dh);
      g.lk = g.lv = contiguous_layout(dims.nh, dims.ns, dims.dh);
    }
    run_backward(dims, saved, lse, dout, saved.lo, g);
    if (packed) return {g.dq};
    return {g.dq, g.dk, g.dv};
  }
  void release() override { saved = Saved(), lse = Tensor(); }
};

// Runs the forward and records the backward; sv.out is the output. Under
// dropout the generator gives B·H·T·S counters, as dropout() on the
// probabilities would take.
Tensor attend(Dims d, Saved sv, bool packed, const std::vector<Tensor>& inputs, const AttentionDropout& drop,
              const char* op) {
  MG_CHECK(drop.p >= 0.0 && drop.p <= 1.0, op, ": dropout probability p must be in [0, 1], got ", drop.p);
  if (drop.p > 0) {
    Generator& g = drop.gen ? *drop.gen : default_generator();
    d.drop_p = drop.p, d.drop_seed = g.seed();
    d.drop_first = g.take(static_cast<uint64_t>(d.nb * d.nh * d.nt * d.ns));
  }
  Tensor lse = Tensor::empty({d.nb, d.nh, d.nt}, sv.out.dtype(), sv.out.device());
  if (sv.out.numel() > 0) run_forward(d, sv, lse);
  Tensor out = sv.out;
  if (any_requires_grad(inputs)) {
    auto node = std::make_shared<FusedAttentionBackward>();
    node->dims = d, node->saved = sv, node->lse = lse, node->packed = packed;
    node->saved.out = out.detach();  // not `out` itself: its grad_fn is this node
    attach_node(out, node, inputs);
  }
  return out;
}

}  // namespace

Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal,
                       const AttentionDropout& drop) {
  const char* op = "fused_attention";
  check_float(q, op, "q");
  check_float(k, op, "k");
  check_float(v, op, "v");
  check_same_type(q, k, op);
  check_same_type(q, v, op);
  MG_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, ": expected q [B, H, T, Dh], k and v [B, H, S, Dh], got ",
           shape_str(q.shape()), ", ", shape_str(k.shape()), ", ", shape_str(v.shape()));
  MG_CHECK(k.shape() == v.shape() && k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3), op,
           ": expected k and v [", q.size(0), ", ", q.size(1), ", S, ", q.size(3), "] to match q ",
           shape_str(q.shape()), ", got ", shape_str(k.shape()), " and ", shape_str(v.shape()));
  MG_CHECK(k.size(2) >= 1 && q.size(3) >= 1, op, ": needs at least one key and Dh >= 1, got q ",
           shape_str(q.shape()), " and k ", shape_str(k.shape()));
  MG_CHECK(!causal || k.size(2) >= q.size(2), op,
           ": a causal mask needs S >= T (else a query sees no key), got q ", shape_str(q.shape()), " and k ",
           shape_str(k.shape()));
  MG_CHECK(std::isfinite(scale), op, ": scale must be finite, got ", scale);
  const Dims d{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3), causal, scale};
  // Rows are read in place when a row's elements are adjacent.
  auto rows_view = [](const Tensor& t) { return t.strides()[3] == 1 ? t.detach() : contiguous(t.detach()); };
  Saved sv;
  sv.qs = rows_view(q), sv.ks = rows_view(k), sv.vs = rows_view(v);
  sv.lq = layout_of(sv.qs), sv.lk = layout_of(sv.ks), sv.lv = layout_of(sv.vs);
  sv.out = Tensor::empty(q.shape(), q.dtype(), q.device());
  sv.lo = contiguous_layout(d.nh, d.nt, d.dh);
  return attend(d, sv, false, {q, k, v}, drop, op);
}

Tensor fused_self_attention(const Tensor& qkv, int64_t heads, double scale, bool causal,
                             const AttentionDropout& drop) {
  const char* op = "fused_self_attention";
  check_float(qkv, op, "qkv");
  MG_CHECK(heads >= 1, op, ": heads must be positive, got ", heads);
  MG_CHECK(qkv.dim() == 3 && qkv.size(2) % (3 * heads) == 0 && qkv.size(2) > 0, op,
           ": expected qkv [B, T, 3 * dim] with dim a positive multiple of heads=", heads, ", got ",
           shape_str(qkv.shape()));
  MG_CHECK(std::isfinite(scale), op, ": scale must be finite, got ", scale);
  const int64_t nb = qkv.size(0), nt = qkv.size(1), dim = qkv.size(2) / 3;
  const Dims d{nb, heads, nt, nt, dim / heads, causal, scale};
  Saved sv;
  sv.qs = sv.ks = sv.vs = contiguous(qkv.detach());
  // token t of head h: q at [b, t, h·Dh], k at [b, t, dim + h·Dh], v at [b, t, 2·dim + h·Dh]
  sv.lq = sv.lk = sv.lv = Layout{nt * 3 * dim, d.dh, 3 * dim};
  sv.q0 = 0, sv.k0 = dim, sv.v0 = 2 * dim;
  sv.out = Tensor::empty({nb, nt, dim}, qkv.dtype(), qkv.device());  // heads side by side
  sv.lo = Layout{nt * dim, d.dh, dim};
  return attend(d, sv, true, {qkv}, drop, op);
}

}  // namespace moegrad
