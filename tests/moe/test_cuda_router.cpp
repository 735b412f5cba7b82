// The routers on CUDA against the CPU: top-k then softmax (ties to the
// lower expert, NaN first, k from 1 to E, rows of up to 300 experts,
// non-contiguous logits), the Switch balance loss and the z-loss, forward
// and backward in float32 and float64;
// TopKRouter with the linear and the cosine gate, end to end; the ACRouter
// (it needs the CUDA AC kernels of moe/ac_weights.h); float64 gradchecks of
// the routers on the device (those of top-k then softmax and of the two
// losses: the op table, tests/ops/op_table.cpp); errors. Tolerances: test_cuda_helpers.h (float64 1e-12
// relative, float32 1e-5), gemm_tol for the routers with their gate GEMM.
#include <cmath>
#include <set>

#include "moe/router.h"
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

// Logits with ties: values on a grid of 0.5 so that equal logits are common.
Tensor tied_logits(int64_t n, int64_t E, DType dtype, uint64_t seed) {
  std::vector<double> v = uniform({n, E}, DType::Float64, seed, -2, 2).to_vector();
  for (double& x : v) x = std::round(x * 2) / 2;
  return Tensor::from_vector(v, {n, E}, dtype);
}

}  // namespace

TEST(CudaRouter, TopkSoftmaxMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  struct Case {
    int64_t n, E;
  };
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const Case& c : std::vector<Case>{{1, 1}, {9, 4}, {300, 8}, {33, 16}, {0, 3}, {5, 300}})
      for (int64_t k : std::set<int64_t>{1, std::min<int64_t>(2, c.E), (c.E + 1) / 2, c.E})
        for (bool ties : {false, true})
          for (bool strided : {false, true}) {
            const std::string what = std::string(dtype_name(dtype)) + " n " + std::to_string(c.n) + " E " +
                                     std::to_string(c.E) + " k " + std::to_string(k) + (ties ? " ties" : "") +
                                     (strided ? " strided" : "");
            Tensor l = ties ? tied_logits(c.n, c.E, dtype, 5 + c.n) : uniform({c.n, c.E}, dtype, 5 + c.n);
            Tensor hl = l.detach().requires_grad_(), dl = on_cuda(l).requires_grad_();
            // a non-contiguous view of the same values
            auto view = [strided](const Tensor& t) {
              return strided ? transpose(contiguous(transpose(t, 0, 1)), 0, 1) : t;
            };
            RouterTopK want = router_topk_softmax(view(hl), k), got = router_topk_softmax(view(dl), k);
            EXPECT_EQ(got.indices.to_indices(), want.indices.to_indices()) << what;
            expect_close(got.values, want.values, what + " values");
            expect_close(got.scores, want.scores, what + " scores");
            Tensor gv = uniform({c.n, k}, dtype, 6), gs = uniform({c.n, k}, dtype, 7);
            add(sum(mul(want.values, gv)), sum(mul(want.scores, gs))).backward();
            add(sum(mul(got.values, on_cuda(gv))), sum(mul(got.scores, on_cuda(gs)))).backward();
            expect_close(dl.grad(), hl.grad(), what + " dlogits");
          }
  // NaN ranks above every number, as on the CPU
  Tensor l = Tensor::from_vector({1, NAN, 3, 3, 0, NAN}, {2, 3}, DType::Float64);
  RouterTopK want = router_topk_softmax(l, 2), got = router_topk_softmax(on_cuda(l), 2);
  EXPECT_EQ(got.indices.to_indices(), want.indices.to_indices());
  expect_close(got.values, want.values, "NaN values");
}

TEST(CudaRouter, LossesMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (int64_t n : {1, 7, 600})
      for (int64_t E : {5, 300}) {
        const int64_t k = E > 5 ? 1 : 2;
        const std::string what = std::string(dtype_name(dtype)) + " n " + std::to_string(n) + " E " +
                                 std::to_string(E) + " k " + std::to_string(k);
        Tensor l = uniform({n, E}, dtype, 11 + n);
        Tensor idx = topk(l, k, -1).indices;
        Tensor hl = l.detach().requires_grad_(), dl = on_cuda(l).requires_grad_();
        Tensor hb = switch_balance_loss(hl, idx), db = switch_balance_loss(dl, on_cuda(idx));
        Tensor hz = router_z_loss(hl), dz = router_z_loss(dl);
        EXPECT_TRUE(db.device().is_cuda() && dz.device().is_cuda()) << what;
        expect_close(db, hb, what + " balance loss");
        expect_close(dz, hz, what + " z-loss");
        add(mul(hb, 0.75), mul(hz, -1.5)).backward();
        add(mul(db, 0.75), mul(dz, -1.5)).backward();
        expect_close(dl.grad(), hl.grad(), what + " dlogits");
        // a non-contiguous index and logits
        Tensor sl = transpose(contiguous(transpose(on_cuda(l), 0, 1)), 0, 1);
        Tensor si = transpose(contiguous(transpose(on_cuda(idx), 0, 1)), 0, 1);
        expect_close(switch_balance_loss(sl, si), hb, what + " strided balance loss");
        expect_close(router_z_loss(sl), hz, what + " strided z-loss");
      }
}

TEST(CudaRouter, TopKRouterMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (GateKind gate : {GateKind::Linear, GateKind::Cosine})
      for (int64_t k : {1, 2}) {
        const std::string what = std::string(dtype_name(dtype)) + (gate == GateKind::Linear ? " linear" : " cosine") +
                                 " k " + std::to_string(k);
        Generator g1(3), g2(3);
        TopKRouter host({6, 4, k, gate}, InitOptions{dtype, &g1}), dev({6, 4, k, gate}, InitOptions{dtype, &g2});
        dev.to(Device::cuda(0));
        Tensor x = uniform({20, 6}, dtype, 4);
        Tensor hx = x.detach().requires_grad_(), dx = on_cuda(x).requires_grad_();
        RouterOutput want = host.forward(hx), got = dev.forward(dx);
        expect_close(got.logits, want.logits, gemm_tol(dtype), what + " logits");
        EXPECT_EQ(got.indices.to_indices(), want.indices.to_indices()) << what;
        expect_close(got.scores, want.scores, gemm_tol(dtype), what + " scores");
        expect_close(got.balance_loss, want.balance_loss, gemm_tol(dtype), what + " balance loss");
        expect_close(got.z_loss, want.z_loss, gemm_tol(dtype), what + " z-loss");
        add(add(sum(mul(want.scores, want.scores)), want.balance_loss), want.z_loss).backward();
        add(add(sum(mul(got.scores, got.scores)), got.balance_loss), got.z_loss).backward();
        expect_close(dx.grad(), hx.grad(), gemm_tol(dtype), what + " dx");
        std::vector<Tensor> hp = host.parameters(), dp = dev.parameters();
        for (size_t i = 0; i < hp.size(); ++i)
          expect_close(dp[i].grad(), hp[i].grad(), gemm_tol(dtype), what + " parameter grad");
      }
}

// Needs ac_cluster_weights and ac_scale_gather on CUDA (moe/ac_weights.h).
TEST(CudaRouter, ACRouterMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (bool differentiable : {false, true})
    for (int64_t mix : {1, 2}) {
      const std::string what =
          std::string(differentiable ? "differentiable" : "detached") + " mix " + std::to_string(mix);
      ACConfig ac;
      ac.mix_m = mix;
      ac.differentiable = differentiable;
      Generator g1(8), g2(8);
      ACRouter host({4, 3, 2, GateKind::Linear}, ac, InitOptions{DType::Float64, &g1});
      ACRouter dev({4, 3, 2, GateKind::Linear}, ac, InitOptions{DType::Float64, &g2});
      dev.to(Device::cuda(0));
      Tensor idx = Tensor::from_indices({0, 1, 1, 2, 2, 0, 0, 2, 1, 0, 2, 1}, {6, 2});
      Tensor pl = uniform({6, 2}, DType::Float64, 9);
      Tensor x = uniform({6, 4}, DType::Float64, 10);
      Tensor hx = x.detach().requires_grad_(), dx = on_cuda(x).requires_grad_();
      Tensor hpl = pl.detach().requires_grad_(), dpl = on_cuda(pl).requires_grad_();
      RouterOutput want = host.forward(hx, {idx, hpl}), got = dev.forward(dx, {on_cuda(idx), dpl});
      EXPECT_EQ(got.indices.to_indices(), want.indices.to_indices()) << what;
      expect_close(got.scores, want.scores, gemm_tol(DType::Float64), what + " scores");
      expect_close(got.ac_weights, want.ac_weights, gemm_tol(DType::Float64), what + " W");
      add(sum(mul(want.scores, want.scores)), sum(mul(want.scaled_input, want.scaled_input))).backward();
      add(sum(mul(got.scores, got.scores)), sum(mul(got.scaled_input, got.scaled_input))).backward();
      expect_close(dx.grad(), hx.grad(), gemm_tol(DType::Float64), what + " dx");
      if (hpl.grad().defined())
        expect_close(dpl.grad(), hpl.grad(), gemm_tol(DType::Float64), what + " d previous logits");
    }
}

TEST(CudaRouter, GradcheckOnDevice) {
  MG_SKIP_WITHOUT_CUDA();
  Generator g(2);
  auto r = std::make_shared<TopKRouter>(RouterConfig{3, 4, 2, GateKind::Cosine}, InitOptions{DType::Float64, &g});
  r->to(Device::cuda(0));
  std::vector<Tensor> in{on_cuda(leaf({6, 3}, 22)).requires_grad_()};
  for (Tensor p : r->parameters()) in.push_back(p);
  EXPECT_GRADCHECK([r](const std::vector<Tensor>& v) {
    RouterOutput o = r->forward(v[0]);
    return add(add(sum(mul(o.scores, o.scores)), o.balance_loss), o.z_loss);
  }, in);
}

TEST(CudaRouter, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  Tensor l = on_cuda(Tensor::zeros({2, 3}));
  EXPECT_MG_ERROR(switch_balance_loss(l, on_cuda(Tensor::from_indices({0, 3}, {2, 1}))),
                  "switch_balance_loss: expert index 3 outside [0, 3)");
  EXPECT_MG_ERROR(switch_balance_loss(l, Tensor::from_indices({0, 1}, {2, 1})),
                  "switch_balance_loss: indices is on cpu, expected cuda:0");
  EXPECT_MG_ERROR(switch_balance_loss(Tensor::zeros({2, 3}), on_cuda(Tensor::from_indices({0, 1}, {2, 1}))),
                  "switch_balance_loss: indices is on cuda:0, expected cpu");
  EXPECT_MG_ERROR(switch_balance_loss(l, on_cuda(Tensor::zeros({2, 1}))), "indices must be int64");
  EXPECT_MG_ERROR(router_z_loss(on_cuda(Tensor::zeros({2, 0}))),
                  "router_z_loss: logits [2, 0] have no tokens or no experts");
  EXPECT_MG_ERROR(switch_balance_loss(on_cuda(Tensor::zeros({0, 3})), on_cuda(Tensor::from_indices({}, {0, 1}))),
                  "switch_balance_loss: logits [0, 3] have no tokens or no experts");
  EXPECT_MG_ERROR(router_topk_softmax(l, 4), "router_topk_softmax: k = 4 out of range [1, 3]");
  EXPECT_MG_ERROR(router_topk_softmax(on_cuda(Tensor::zeros({2, 3, 1})), 1), "expected logits [n, E]");
  TopKRouter r({4, 3, 1, GateKind::Linear});  // parameters on the CPU
  EXPECT_MG_ERROR(r.forward(on_cuda(Tensor::zeros({2, 4}))), "matmul: devices differ");
}
