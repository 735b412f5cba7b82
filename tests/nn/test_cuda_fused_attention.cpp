// fused_attention and fused_self_attention on CUDA tensors (the tiled kernels
// of cuda/flash_attention.cu) against the same ops on the CPU: forward and
// gradients, causal and not, with dropout and without, T < S, shapes across
// several 16-row tiles, head dims up to the kernels' limit of 128, strided
// and packed inputs, empty inputs; queries that see no key (the kernels called directly); the same
// bits on a second run; errors (head dim beyond 128, mixed devices). Float64
// gradchecks on the device across tiles: the op table, tests/ops/op_table.cpp.
//
// Tolerances, looser than test_cuda_helpers.h's where said: the device
// accumulates scores, probabilities and gradients in double in its own order
// (tiles, online softmax), the CPU in the dtype with Eigen's blocking. An
// output or gradient element is a sum of O(S) terms of size ~1 that may
// cancel, so near-zero elements carry an absolute rounding of the terms' size:
// ~1e-14 in float64 (atol 1e-13) and ~1e-6 in the CPU's float32 (atol 1e-5).
#include <cmath>

#include "nn/attention.h"
#include "test_cuda_helpers.h"
#ifdef MOEGRAD_WITH_CUDA
#include "cuda/flash_attention.h"
#endif

using namespace moegrad;
using namespace moegrad::testing;

namespace {

Tol attention_tol(DType dtype) { return dtype == DType::Float64 ? Tol{1e-12, 1e-13} : Tol{1e-5, 1e-5}; }

struct Case {
  int64_t nb, nh, nt, ns, dh;
};

// B, H, T, S, Dh: one tile, several tiles with a partial last one, T < S,
// S < T (not causal), a single query and key, the widest heads.
const std::vector<Case>& cases() {
  static const std::vector<Case> all = {{2, 3, 16, 16, 4}, {2, 3, 70, 70, 5}, {1, 2, 37, 75, 8},
                                        {2, 1, 9, 3, 4},   {1, 1, 1, 1, 1},   {1, 2, 33, 40, 64},
                                        {1, 1, 20, 20, 127}, {1, 2, 18, 18, 128}};
  return all;
}

// q, k, v with values in [-1, 1) of the case's shapes.
std::vector<Tensor> operands(const Case& c, DType dtype, uint64_t seed) {
  return {uniform({c.nb, c.nh, c.nt, c.dh}, dtype, seed, -1, 1), uniform({c.nb, c.nh, c.ns, c.dh}, dtype, seed + 1, -1, 1),
          uniform({c.nb, c.nh, c.ns, c.dh}, dtype, seed + 2, -1, 1)};
}

std::vector<Tensor> to_cuda(const std::vector<Tensor>& xs) {
  std::vector<Tensor> d;
  for (const Tensor& x : xs) d.push_back(on_cuda(x));
  return d;
}

std::vector<Tensor> grads_of(const std::vector<Tensor>& xs) {
  std::vector<Tensor> g;
  for (const Tensor& x : xs) g.push_back(x.grad());
  return g;
}

// Runs fused_attention on host q, k, v and on dev (the same values on the
// device, in any layout) with the upstream gradient w (sent to the device as a
// transposed view) and compares the output and dq, dk, dv. With drop_p > 0
// both sides drop with generators in the same state (the same mask).
void compare(const std::vector<Tensor>& host, const std::vector<Tensor>& dev, double scale, bool causal,
             const std::string& what, double drop_p = 0) {
  std::vector<Tensor> h, d;
  for (int i = 0; i < 3; ++i) {
    h.push_back(host[i].detach().requires_grad_());
    d.push_back(dev[i].detach().requires_grad_());
  }
  Generator host_gen(21), dev_gen(21);
  Tensor yh = fused_attention(h[0], h[1], h[2], scale, causal, {drop_p, &host_gen});
  Tensor yd = fused_attention(d[0], d[1], d[2], scale, causal, {drop_p, &dev_gen});
  EXPECT_EQ(dev_gen.offset(), host_gen.offset()) << what;
  ASSERT_EQ(yd.device(), Device::cuda(0)) << what;
  const Tol tol = attention_tol(host[0].dtype());
  expect_close(yd, yh, tol, what + " out");
  Tensor w = uniform(yh.shape(), host[0].dtype(), 99, -1, 1);
  yh.backward(w);
  yd.backward(transpose(on_cuda(contiguous(transpose(w, 2, 3))), 2, 3));
  const char* names[] = {" dq", " dk", " dv"};
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(d[i].grad().defined()) << what << names[i];
    EXPECT_EQ(d[i].grad().device(), Device::cuda(0));
    expect_close(d[i].grad(), h[i].grad(), tol, what + names[i]);
  }
}

// q, k, v [B, T, 3, H, Dh] -> three [B, H, T, Dh] views, as MultiHeadAttention makes them.
std::vector<Tensor> split_heads(const Tensor& qkv, int64_t heads) {
  const int64_t nb = qkv.size(0), nt = qkv.size(1), dh = qkv.size(2) / 3 / heads;
  Tensor parts = permute(reshape(qkv, {nb, nt, 3, heads, dh}), {2, 0, 3, 1, 4});
  std::vector<Tensor> out;
  for (int64_t i = 0; i < 3; ++i) out.push_back(squeeze(narrow(parts, 0, i, 1), 0));
  return out;
}

}  // namespace

TEST(CudaFusedAttention, MatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (double drop_p : {0.0, 0.3})
    for (DType dtype : {DType::Float64, DType::Float32})
      for (bool causal : {false, true})
        for (const Case& c : cases()) {
          if (causal && c.ns < c.nt) continue;
          const std::vector<Tensor> in = operands(c, dtype, 1);
          compare(in, to_cuda(in), 1.0 / std::sqrt(static_cast<double>(c.dh)), causal,
                  std::string(dtype_name(dtype)) + (causal ? " causal " : " full ") +
                      shape_str({c.nb, c.nh, c.nt, c.ns, c.dh}) + " dropout " + std::to_string(drop_p),
                  drop_p);
        }
}

TEST(CudaFusedAttention, StridedInputs) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32}) {
    // rows read in place: views of a packed [B, T, 3·H·Dh] projection
    Tensor packed = uniform({2, 40, 3 * 2 * 4}, dtype, 2, -1, 1);
    std::vector<Tensor> dev = split_heads(on_cuda(packed), 2);
    ASSERT_FALSE(dev[0].is_contiguous());
    compare(split_heads(packed, 2), dev, 0.5, true, std::string("packed views ") + dtype_name(dtype));
    // rows whose elements are not adjacent (copied first): transposed views
    Case c{1, 2, 19, 19, 6};
    std::vector<Tensor> in = operands(c, dtype, 3), t;
    for (const Tensor& x : in) t.push_back(transpose(on_cuda(contiguous(transpose(x, 2, 3))), 2, 3));
    ASSERT_NE(t[0].strides()[3], 1);
    compare(in, t, 0.7, false, std::string("transposed ") + dtype_name(dtype));
  }
}

TEST(CudaFusedAttention, OnlySomeInputsNeedGradients) {
  MG_SKIP_WITHOUT_CUDA();
  Case c{1, 2, 20, 20, 4};
  std::vector<Tensor> in = operands(c, DType::Float64, 4);
  Tensor q = on_cuda(in[0]), k = on_cuda(in[1]).requires_grad_(), v = on_cuda(in[2]);
  sum(fused_attention(q, k, v, 0.8, true)).backward();
  Tensor hk = in[1].detach().requires_grad_();
  sum(fused_attention(in[0], hk, in[2], 0.8, true)).backward();
  expect_close(k.grad(), hk.grad(), attention_tol(DType::Float64), "dk alone");
  EXPECT_FALSE(q.grad().defined());
}

TEST(CudaFusedAttention, EmptyInputs) {
  MG_SKIP_WITHOUT_CUDA();
  // no queries: an empty output, and keys no query sees get zero gradients
  for (const Case& c : {Case{1, 2, 0, 5, 4}, Case{0, 2, 3, 3, 4}}) {
    std::vector<Tensor> in = operands(c, DType::Float64, 5);
    std::vector<Tensor> d;
    for (const Tensor& x : in) d.push_back(on_cuda(x).requires_grad_());
    Tensor y = fused_attention(d[0], d[1], d[2], 1.0, false);
    EXPECT_EQ(y.shape(), (Shape{c.nb, c.nh, c.nt, c.dh}));
    sum(y).backward();
    for (int i = 1; i < 3; ++i) {
      ASSERT_TRUE(d[i].grad().defined());
      expect_close(d[i].grad(), Tensor::zeros(in[i].shape(), DType::Float64), "empty-query gradient");
    }
  }
}

#ifdef MOEGRAD_WITH_CUDA

// The kernels with causal and S < T, which fused_attention rejects: queries
// t < T - S see no key. Their output and dq are 0 and their lse -inf (as
// masked_softmax gives a masked key probability 0: never 0/0); the other
// queries, dk and dv are those of the last S queries alone, a causal call
// with T = S. T = 40, S = 7: a whole tile of queries that see nothing, a tile
// where only the last row sees a key, and a partial tile.
TEST(CudaFusedAttention, QueriesThatSeeNoKeyGetZeros) {
  MG_SKIP_WITHOUT_CUDA();
  const Case c{2, 3, 40, 7, 5};
  const int64_t blind = c.nt - c.ns;
  const double scale = 0.6;
  auto rows = [](const Tensor& t) { return CudaAttentionRows{t, 0, t.strides()[0], t.strides()[1], t.strides()[2]}; };
  for (DType dtype : {DType::Float64, DType::Float32}) {
    const std::string what = dtype_name(dtype);
    const std::vector<Tensor> in = operands(c, dtype, 18);
    const Tensor w = uniform({c.nb, c.nh, c.nt, c.dh}, dtype, 19, -1, 1);
    const std::vector<Tensor> d = to_cuda(in);
    auto empty_like = [&](const Tensor& t) { return Tensor::empty(t.shape(), dtype, Device::cuda(0)); };
    Tensor out = empty_like(d[0]), lse = Tensor::empty({c.nb * c.nh * c.nt}, dtype, Device::cuda(0));
    Tensor dq = empty_like(d[0]), dk = empty_like(d[1]), dv = empty_like(d[2]), dw = on_cuda(w);
    const CudaAttentionDims dims{c.nb, c.nh, c.nt, c.ns, c.dh, true, scale};
    cuda_flash_attention(dims, rows(d[0]), rows(d[1]), rows(d[2]), rows(out), lse);
    cuda_flash_attention_backward(dims, rows(d[0]), rows(d[1]), rows(d[2]), rows(out), lse, rows(dw), rows(dq),
                                  rows(dk), rows(dv));
    // the reference: the queries that see keys, on the CPU
    Tensor q = contiguous(narrow(in[0], 2, blind, c.ns)).requires_grad_();
    Tensor k = in[1].detach().requires_grad_(), v = in[2].detach().requires_grad_();
    Tensor y = fused_attention(q, k, v, scale, true);
    y.backward(contiguous(narrow(w, 2, blind, c.ns)));
    const Tol tol = attention_tol(dtype);
    const std::vector<double> zeros(c.nb * c.nh * blind * c.dh, 0.0);
    EXPECT_EQ(narrow(out, 2, 0, blind).to_vector(), zeros) << what << " out of the blind queries";
    EXPECT_EQ(narrow(dq, 2, 0, blind).to_vector(), zeros) << what << " dq of the blind queries";
    expect_close(narrow(out, 2, blind, c.ns), y, tol, what + " out");
    expect_close(narrow(dq, 2, blind, c.ns), q.grad(), tol, what + " dq");
    expect_close(dk, k.grad(), tol, what + " dk");
    expect_close(dv, v.grad(), tol, what + " dv");
    const std::vector<double> l = reshape(lse, {c.nb * c.nh, c.nt}).to_vector();
    for (int64_t bh = 0; bh < c.nb * c.nh; ++bh)
      for (int64_t t = 0; t < c.nt; ++t) {
        const double v_t = l[bh * c.nt + t];
        if (t < blind) EXPECT_EQ(v_t, -INFINITY) << what << " lse of query " << t;
        else EXPECT_TRUE(std::isfinite(v_t)) << what << " lse of query " << t << " is " << v_t;
      }
  }
}

#endif  // MOEGRAD_WITH_CUDA

TEST(CudaFusedAttention, SameBitsEveryRun) {
  MG_SKIP_WITHOUT_CUDA();
  Case c{2, 2, 45, 45, 16};
  std::vector<Tensor> in = operands(c, DType::Float32, 6);
  auto run = [&] {
    std::vector<Tensor> d;
    for (const Tensor& x : in) d.push_back(on_cuda(x).requires_grad_());
    Tensor y = fused_attention(d[0], d[1], d[2], 0.4, true);
    sum(mul(y, y)).backward();
    std::vector<double> all = y.to_vector();
    for (const Tensor& g : grads_of(d)) {
      std::vector<double> gv = g.to_vector();
      all.insert(all.end(), gv.begin(), gv.end());
    }
    return all;
  };
  const std::vector<double> one = run(), two = run();
  ASSERT_EQ(one.size(), two.size());
  for (size_t i = 0; i < one.size(); ++i) ASSERT_EQ(one[i], two[i]) << "element " << i;
}

TEST(CudaFusedAttention, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor q = on_cuda(uniform({1, 2, 4, 3}, DType::Float64, 10));
  EXPECT_MG_ERROR(fused_attention(q, q, q.to(Device::cpu()), 1.0, false), "fused_attention: devices differ");
  EXPECT_MG_ERROR(fused_attention(q, q, on_cuda(Tensor::zeros({1, 2, 4, 3})), 1.0, false), "dtypes differ");
  Tensor wide = on_cuda(uniform({1, 1, 4, 129}, DType::Float32, 11));
  EXPECT_MG_ERROR(fused_attention(wide, wide, wide, 1.0, true), "head dims Dh up to 128");
  EXPECT_MG_ERROR(fused_attention(on_cuda(Tensor::zeros({1, 1, 2, 2}, DType::Int64)), q, q, 1.0, false),
                  "float32 or float64");
}

TEST(CudaFusedSelfAttention, MatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  struct Packed {
    int64_t nb, nt, heads, dh;
  };
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool causal : {true, false})
      for (const Packed& p : {Packed{2, 70, 3, 4}, Packed{1, 1, 1, 8}, Packed{2, 17, 2, 128}, Packed{0, 5, 2, 4}}) {
        const std::string what = std::string(dtype_name(dtype)) + (causal ? " causal " : " full ") +
                                 shape_str({p.nb, p.nt, p.heads, p.dh});
        Tensor x = uniform({p.nb, p.nt, 3 * p.heads * p.dh}, dtype, 12, -1, 1);
        Tensor h = x.detach().requires_grad_(), d = on_cuda(x).requires_grad_();
        const double scale = 1.0 / std::sqrt(static_cast<double>(p.dh));
        Tensor yh = fused_self_attention(h, p.heads, scale, causal), yd = fused_self_attention(d, p.heads, scale, causal);
        const Tol tol = attention_tol(dtype);
        expect_close(yd, yh, tol, what + " out");
        Tensor w = uniform(yh.shape(), dtype, 13, -1, 1);
        yh.backward(w);
        yd.backward(on_cuda(w));
        expect_close(d.grad(), h.grad(), tol, what + " dqkv");
      }
}

TEST(CudaFusedSelfAttention, NonContiguousInput) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor x = uniform({2, 20, 12}, DType::Float64, 14, -1, 1);
  Tensor d = transpose(on_cuda(contiguous(transpose(x, 0, 1))), 0, 1);  // copied to contiguous inside
  ASSERT_FALSE(d.is_contiguous());
  expect_close(fused_self_attention(d, 2, 0.5, true), fused_self_attention(x, 2, 0.5, true),
               attention_tol(DType::Float64), "strided qkv");
}

TEST(CudaFusedSelfAttention, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  EXPECT_MG_ERROR(fused_self_attention(on_cuda(uniform({1, 4, 3 * 2 * 130}, DType::Float32, 16)), 2, 1.0, true),
                  "head dims Dh up to 128");
  EXPECT_MG_ERROR(fused_self_attention(on_cuda(uniform({2, 4, 10}, DType::Float64, 17)), 2, 1.0, true),
                  "multiple of heads=2");
}
