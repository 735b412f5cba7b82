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
// Parallel over (sample, head): each thread owns whole rows of dK and dV, so
// the result does not depend on the thread count.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>

#include "autograd/ops/util.h"
#include "nn/attention.h"
#include "tensor/parallel.h"

namespace moegrad {

namespace {

constexpr int64_t kBlock = 48;

// Scratch with Eigen's alignment: its reductions (max, sum) peel by address,
// so a buffer at an arbitrary address would change the summation order.
template <typename T>
using Scratch = Eigen::Matrix<T, Eigen::Dynamic, 1>;
template <typename T>
using Mat = Eigen::Map<Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;
template <typename T>
using CMat = Eigen::Map<const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>;

struct Dims {
  int64_t heads_total, nt, ns, dh;  // B·H, queries, keys, head width
  bool causal;
  double scale;
  // Keys visible to query t (causal: t + (S - T) + 1 of them).
  int64_t kept(int64_t t) const { return causal ? std::min(ns, t + ns - nt + 1) : ns; }
};

template <typename T>
void forward_kernel(const Dims& d, const T* q, const T* k, const T* v, T* o, T* lse) {
  parallel_for(d.heads_total, 1, [&](int64_t b, int64_t e) {
    Scratch<T> scratch(kBlock * d.ns);
    for (int64_t h = b; h < e; ++h) {
      CMat<T> K(k + h * d.ns * d.dh, d.ns, d.dh), V(v + h * d.ns * d.dh, d.ns, d.dh);
      for (int64_t t0 = 0; t0 < d.nt; t0 += kBlock) {
        const int64_t rows = std::min(kBlock, d.nt - t0), keys = d.kept(t0 + rows - 1);
        CMat<T> Q(q + (h * d.nt + t0) * d.dh, rows, d.dh);
        Mat<T> S(scratch.data(), rows, keys);
        S.noalias() = (Q * K.topRows(keys).transpose()) * static_cast<T>(d.scale);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t n = d.kept(t0 + r);
          auto row = S.row(r);
          const T m = row.head(n).maxCoeff();
          row.head(n) = (row.head(n).array() - m).exp();
          const T sum = row.head(n).sum();
          row.head(n) /= sum;
          row.tail(keys - n).setZero();
          lse[h * d.nt + t0 + r] = m + std::log(sum);
        }
        Mat<T>(o + (h * d.nt + t0) * d.dh, rows, d.dh).noalias() = S * V.topRows(keys);
      }
    }
  });
}

template <typename T>
void backward_kernel(const Dims& d, const T* q, const T* k, const T* v, const T* o, const T* lse, const T* dout,
                     T* dq, T* dk, T* dv) {
  parallel_for(d.heads_total, 1, [&](int64_t b, int64_t e) {
    Scratch<T> p_buf(kBlock * d.ns), dp_buf(kBlock * d.ns);
    for (int64_t h = b; h < e; ++h) {
      const int64_t kv = h * d.ns * d.dh;
      CMat<T> K(k + kv, d.ns, d.dh), V(v + kv, d.ns, d.dh);
      Mat<T> dK(dk + kv, d.ns, d.dh), dV(dv + kv, d.ns, d.dh);
      dK.setZero(), dV.setZero();
      for (int64_t t0 = 0; t0 < d.nt; t0 += kBlock) {
        const int64_t rows = std::min(kBlock, d.nt - t0), keys = d.kept(t0 + rows - 1);
        const int64_t qo = (h * d.nt + t0) * d.dh;
        CMat<T> Q(q + qo, rows, d.dh), O(o + qo, rows, d.dh), dO(dout + qo, rows, d.dh);
        Mat<T> P(p_buf.data(), rows, keys), dP(dp_buf.data(), rows, keys);
        P.noalias() = (Q * K.topRows(keys).transpose()) * static_cast<T>(d.scale);
        dP.noalias() = dO * V.topRows(keys).transpose();
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t n = d.kept(t0 + r);
          const T D = dO.row(r).dot(O.row(r));
          auto pr = P.row(r);
          pr.head(n) = (pr.head(n).array() - lse[h * d.nt + t0 + r]).exp();
          pr.tail(keys - n).setZero();
          // dP becomes dS = P ⊙ (dP − D) · scale (0 where masked, as P is)
          dP.row(r).array() = pr.array() * (dP.row(r).array() - D) * static_cast<T>(d.scale);
        }
        dV.topRows(keys).noalias() += P.transpose() * dO;
        Mat<T>(dq + qo, rows, d.dh).noalias() = dP * K.topRows(keys);
        dK.topRows(keys).noalias() += dP.transpose() * Q;
      }
    }
  });
}

struct FusedAttentionBackward : Node {
  Dims dims;
  Tensor q, k, v, out, lse;
  const char* name() const override { return "fused_attention"; }
  std::vector<Tensor> backward(const Tensor& dout_in) override {
    Tensor dout = contiguous(dout_in);
    Tensor dq = Tensor::empty(q.shape(), q.dtype()), dk = Tensor::empty(k.shape(), k.dtype());
    Tensor dv = Tensor::empty(v.shape(), v.dtype());
    dispatch_float(q.dtype(), "fused_attention", [&](auto tag) {
      using T = typename decltype(tag)::type;
      backward_kernel<T>(dims, q.data<T>(), k.data<T>(), v.data<T>(), out.data<T>(), lse.data<T>(), dout.data<T>(),
                         dq.data<T>(), dk.data<T>(), dv.data<T>());
    });
    return {dq, dk, dv};
  }
  void release() override { q = k = v = out = lse = Tensor(); }
};

}  // namespace

Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, bool causal) {
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
  Dims d{q.size(0) * q.size(1), q.size(2), k.size(2), q.size(3), causal, scale};
  Tensor qc = contiguous(q.detach()), kc = contiguous(k.detach()), vc = contiguous(v.detach());
  Tensor out = Tensor::empty(q.shape(), q.dtype());
  Tensor lse = Tensor::empty({q.size(0), q.size(1), q.size(2)}, q.dtype());
  if (out.numel() > 0)
    dispatch_float(q.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      forward_kernel<T>(d, qc.data<T>(), kc.data<T>(), vc.data<T>(), out.data<T>(), lse.data<T>());
    });
  if (any_requires_grad({q, k, v})) {
    auto node = std::make_shared<FusedAttentionBackward>();
    node->dims = d;
    node->q = qc, node->k = kc, node->v = vc, node->out = out.detach(), node->lse = lse;
    attach_node(out, node, {q, k, v});
  }
  return out;
}

}  // namespace moegrad
