// MoELayer and the MoE sublayer on CUDA against the CPU, forward and backward
// in float32 and float64: the top-k router (k = 1, 2, the cosine gate), with
// a capacity that drops slots, and the AC router (this one needs the CUDA AC
// kernels of moe/ac_weights.h; the sublayer needs layer_norm and dropout on
// CUDA); routing statistics; a float64 gradcheck on the device. Tolerance:
// gemm_tol (the experts and the gate are GEMMs).
#include "moe/blocks.h"
#include "moe/moe_layer.h"
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

// Two layers with the same parameters, the second on the device.
std::pair<std::shared_ptr<MoELayer>, std::shared_ptr<MoELayer>> layer_pair(const MoEConfig& c, DType dtype,
                                                                           uint64_t seed) {
  Generator g1(seed), g2(seed);
  auto host = std::make_shared<MoELayer>(c, InitOptions{dtype, &g1});
  auto dev = std::make_shared<MoELayer>(c, InitOptions{dtype, &g2});
  dev->to(Device::cuda(0));
  return {host, dev};
}

// Forward and backward of both layers on the same tokens; compares outputs,
// losses, assignments, statistics and every gradient.
void expect_layers_match(const MoEConfig& c, DType dtype, const Assignments& prev, const std::string& what) {
  auto [host, dev] = layer_pair(c, dtype, 17);
  Tensor x = uniform({24, c.dim}, dtype, 18);
  Tensor hx = x.detach().requires_grad_(), dx = on_cuda(x).requires_grad_();
  Assignments dprev;
  if (prev.defined()) dprev = {on_cuda(prev.indices), on_cuda(prev.logits)};
  MoEOutput want = host->forward(hx, prev), got = dev->forward(dx, dprev);
  ASSERT_TRUE(got.y.device().is_cuda()) << what;
  expect_close(got.y, want.y, gemm_tol(dtype), what + " y");
  expect_close(got.balance_loss, want.balance_loss, gemm_tol(dtype), what + " balance loss");
  expect_close(got.z_loss, want.z_loss, gemm_tol(dtype), what + " z-loss");
  EXPECT_EQ(got.assignments.indices.to_indices(), want.assignments.indices.to_indices()) << what;
  expect_close(got.assignments.logits, want.assignments.logits, gemm_tol(dtype), what + " assignment logits");
  EXPECT_EQ(dev->last_stats.tokens_per_expert, host->last_stats.tokens_per_expert) << what;
  EXPECT_EQ(dev->last_stats.dropped, host->last_stats.dropped) << what;
  EXPECT_NEAR(dev->last_stats.balance_loss, host->last_stats.balance_loss,
              1e-5 * std::fabs(host->last_stats.balance_loss))
      << what;
  Tensor g = uniform(want.y.shape(), dtype, 19);
  add(add(sum(mul(want.y, g)), want.balance_loss), mul(want.z_loss, 0.1)).backward();
  add(add(sum(mul(got.y, on_cuda(g))), got.balance_loss), mul(got.z_loss, 0.1)).backward();
  expect_close(dx.grad(), hx.grad(), gemm_tol(dtype), what + " dx");
  auto hp = host->named_parameters(), dp = dev->named_parameters();
  for (size_t i = 0; i < hp.size(); ++i) {
    ASSERT_EQ(dp[i].second.grad().defined(), hp[i].second.grad().defined()) << what << " " << hp[i].first;
    if (hp[i].second.grad().defined())
      expect_close(dp[i].second.grad(), hp[i].second.grad(), gemm_tol(dtype), what + " " + hp[i].first);
  }
}

}  // namespace

TEST(CudaMoELayer, TopKMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (int64_t k : {1, 2})
      for (double cf : {0.0, 0.8})
        for (GateKind gate : {GateKind::Linear, GateKind::Cosine}) {
          MoEConfig c;
          c.dim = 6, c.hidden = 7, c.experts = 4, c.k = k, c.capacity_factor = cf, c.gate = gate;
          expect_layers_match(c, dtype, {},
                              std::string(dtype_name(dtype)) + " k " + std::to_string(k) + " cf " +
                                  std::to_string(cf) + (gate == GateKind::Cosine ? " cosine" : " linear"));
        }
}

// Needs ac_cluster_weights and ac_scale_gather on CUDA (moe/ac_weights.h).
TEST(CudaMoELayer, ACMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (bool differentiable : {false, true})
      for (bool scale_input : {false, true})
        for (int64_t mix : {1, 2}) {
          MoEConfig c;
          c.dim = 6, c.hidden = 5, c.experts = 4, c.k = 2, c.use_ac = true, c.capacity_factor = 0.9;
          c.ac.differentiable = differentiable;
          c.ac.mix_m = mix;
          c.scale_expert_input = scale_input;
          std::vector<int64_t> idx;  // two distinct previous experts per token
          for (int64_t i = 0; i < 24; ++i) idx.push_back(i % 4), idx.push_back((i % 4 + 1 + (i / 4) % 3) % 4);
          Assignments prev{Tensor::from_indices(idx, {24, 2}), uniform({24, 2}, dtype, 32)};
          expect_layers_match(c, dtype, prev,
                              std::string(dtype_name(dtype)) + (differentiable ? " differentiable" : " detached") +
                                  (scale_input ? " scaled" : "") + " mix " + std::to_string(mix));
        }
}

TEST(CudaMoELayer, GradcheckOnDevice) {
  MG_SKIP_WITHOUT_CUDA();
  for (double cf : {0.0, 0.8}) {
    SCOPED_TRACE(cf);
    MoEConfig c;
    c.dim = 4, c.hidden = 5, c.experts = 3, c.k = 2, c.capacity_factor = cf;
    auto m = layer_pair(c, DType::Float64, 1).second;
    std::vector<Tensor> in{on_cuda(leaf({7, 4}, 2)).requires_grad_()};
    for (Tensor p : m->parameters()) in.push_back(p);
    EXPECT_GRADCHECK([m](const std::vector<Tensor>& v) {
      MoEOutput o = m->forward(v[0]);
      return add(sum(mul(o.y, o.y)), o.balance_loss);
    }, in);
  }
}

// Needs layer_norm (and dropout, which the sublayer always applies) on CUDA.
TEST(CudaMoELayer, SublayerMatchesCpu) {
  MG_SKIP_WITHOUT_CUDA();
  BlockConfig bc;
  bc.dim = 8, bc.heads = 2, bc.ffn_hidden = 16;
  bc.moe.hidden = 12, bc.moe.experts = 4, bc.moe.k = 2;
  Generator g1(41), g2(41);
  Sublayer host('g', bc, InitOptions{DType::Float64, &g1}), dev('g', bc, InitOptions{DType::Float64, &g2});
  dev.to(Device::cuda(0));
  Tensor h = uniform({2, 5, 8}, DType::Float64, 42);
  Tensor hh = h.detach().requires_grad_(), dh = on_cuda(h).requires_grad_();
  StackState hs, ds;
  Tensor want = host.forward(hh, hs), got = dev.forward(dh, ds);
  expect_close(got, want, gemm_tol(DType::Float64), "sublayer output");
  expect_close(ds.balance_loss, hs.balance_loss, gemm_tol(DType::Float64), "sublayer balance loss");
  add(sum(mul(want, want)), hs.balance_loss).backward();
  add(sum(mul(got, got)), ds.balance_loss).backward();
  expect_close(dh.grad(), hh.grad(), gemm_tol(DType::Float64), "sublayer dh");
  EXPECT_EQ(dev.stats().tokens_per_expert, host.stats().tokens_per_expert);
}

TEST(CudaMoELayer, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  MoEConfig c;
  c.dim = 4, c.hidden = 4, c.experts = 2, c.k = 1;
  MoELayer m(c);  // parameters on the CPU
  EXPECT_MG_ERROR(m.forward(on_cuda(Tensor::zeros({3, 4}))), "matmul: devices differ");
  c.use_ac = true;
  auto [host, dev] = layer_pair(c, DType::Float32, 3);
  EXPECT_MG_ERROR(dev->forward(on_cuda(Tensor::zeros({3, 4})), {Tensor::from_indices({0, 1, 0}, {3, 1}), Tensor()}),
                  "previous assignments are on cpu but tokens are on cuda:0");
}
