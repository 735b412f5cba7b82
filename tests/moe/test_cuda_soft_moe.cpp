// Soft MoE on CUDA tensors against the same layer on the CPU: forward (y, the
// dispatch and combine weights, the handed-on assignments and routing stats)
// and the gradients of x, every parameter and the previous logits, without AC
// and with AC (detached and differentiable, mix_k 1 / 2 / 8, both scalings),
// float32 and float64; a chain of two layers where the second takes the
// first's device assignments; float64 gradchecks on the device; errors.
// The layer composes dozens of ops (matmuls through cuBLAS, two softmaxes, the
// experts' GELU FFN), each rounding differently from its CPU kernel, so this
// suite compares to float64 1e-10 relative (atol 1e-12) and float32 1e-4
// (atol 1e-5) instead of the single-op tolerances of test_cuda_helpers.h.
// It needs the CUDA softmax and topk, which other suites port.
#include "moe/soft_moe.h"
#include "test_cuda_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {

Tol layer_tol(DType dtype) { return dtype == DType::Float64 ? Tol{1e-10, 1e-12} : Tol{1e-4, 1e-5}; }

// The parameters in a fixed order (phi, scale, then the experts' w1, b1, w2, b2).
std::vector<Tensor> members(const SoftMoE& l) {
  return {l.phi, l.scale, l.experts->w1, l.experts->b1, l.experts->w2, l.experts->b2};
}

// A copy of `cpu` whose parameters are GPU leaves with the same values.
std::shared_ptr<SoftMoE> cuda_copy(const SoftMoE& cpu) {
  auto d = std::make_shared<SoftMoE>(cpu.config, InitOptions{cpu.phi.dtype()});
  auto move = [](const Tensor& t) {
    Tensor c = on_cuda(t.detach());
    c.requires_grad_();
    return c;
  };
  d->phi = move(cpu.phi), d->scale = move(cpu.scale);
  d->experts->w1 = move(cpu.experts->w1), d->experts->b1 = move(cpu.experts->b1);
  d->experts->w2 = move(cpu.experts->w2), d->experts->b2 = move(cpu.experts->b2);
  return d;
}

struct Case {
  int64_t b, m, dim, hidden, experts, slots, mix_k;
  bool ac, differentiable;
  ACScaling scaling;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      {2, 3, 4, 3, 2, 2, 8, false, false, ACScaling::Global},
      {2, 1, 3, 2, 4, 1, 1, false, false, ACScaling::Global},      // one token per sequence
      {3, 5, 6, 5, 3, 2, 2, true, false, ACScaling::Global},       // the paper: W detached
      {2, 4, 4, 3, 3, 2, 1, true, true, ACScaling::PerFeature},    // labels only
      {2, 4, 4, 3, 3, 2, 8, true, true, ACScaling::Global},        // mixing clamped to the previous columns
      {1, 300, 8, 6, 4, 2, 2, true, false, ACScaling::Global},     // softmax over more tokens than one block
  };
  return all;
}

std::string label(const Case& c, DType dtype) {
  return std::string(dtype_name(dtype)) + " b=" + std::to_string(c.b) + " m=" + std::to_string(c.m) +
         (c.ac ? (c.differentiable ? " AC differentiable" : " AC detached") : "") + " mix_k=" + std::to_string(c.mix_k);
}

// Previous assignments over n tokens: 3 experts in [0, E) per token and their logits (a leaf).
Assignments previous(int64_t n, int64_t E, DType dtype, uint64_t seed) {
  std::vector<int64_t> idx(n * 3);
  for (int64_t i = 0; i < n * 3; ++i) idx[i] = static_cast<int64_t>(random_bits(seed, i) % E);
  Tensor logits = uniform({n, 3}, dtype, seed, -1, 1);
  logits.requires_grad_();
  return {Tensor::from_indices(idx, {n, 3}), logits};
}

struct LayerRun {
  SoftMoEOutput out;
  RoutingStats stats;
  std::vector<Tensor> grads;  // x, the parameters, the previous logits (undefined when they get none)
};

// Forward and the gradients of sum(y ⊙ R) + sum(handed-on logits ⊙ R2).
LayerRun run_layer(SoftMoE& layer, const Tensor& x_host, const Assignments& prev_host, const Tensor& R, const Tensor& R2,
        bool cuda) {
  auto dev = [cuda](const Tensor& t) { return cuda ? on_cuda(t.detach()) : clone(t).detach(); };
  Tensor x = dev(x_host);
  x.requires_grad_();
  Assignments prev;
  if (prev_host.defined()) {
    prev = {dev(prev_host.indices), dev(prev_host.logits)};
    if (layer.config.differentiable) prev.logits.requires_grad_();
  }
  LayerRun r;
  r.out = layer.forward(x, prev);
  r.stats = layer.last_stats;
  add(sum(mul(r.out.y, dev(R))), sum(mul(r.out.assignments.logits, dev(R2)))).backward();
  r.grads.push_back(x.grad());
  for (const Tensor& p : members(layer)) r.grads.push_back(p.grad());
  r.grads.push_back(prev.defined() ? prev.logits.grad() : Tensor());
  return r;
}

}  // namespace

TEST(CudaSoftMoE, ForwardAndBackwardMatchCpu) {
  MG_SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::Float64, DType::Float32})
    for (const Case& c : cases()) {
      const std::string what = label(c, dtype);
      SCOPED_TRACE(what);
      SoftMoEConfig cfg;
      cfg.dim = c.dim, cfg.hidden = c.hidden, cfg.experts = c.experts, cfg.slots = c.slots, cfg.mix_k = c.mix_k;
      cfg.use_ac = c.ac, cfg.differentiable = c.differentiable, cfg.ac.scaling = c.scaling;
      Generator g(7);
      SoftMoE cpu(cfg, InitOptions{dtype, &g});
      std::shared_ptr<SoftMoE> gpu = cuda_copy(cpu);
      const int64_t n = c.b * c.m, k = std::min(c.mix_k, c.experts * c.slots);
      Tensor x = uniform({c.b, c.m, c.dim}, dtype, 8);
      Assignments prev = c.ac ? previous(n, c.experts, dtype, 9) : Assignments();
      Tensor R = uniform({c.b, c.m, c.dim}, dtype, 10), R2 = uniform({n, k}, dtype, 11);
      LayerRun want = run_layer(cpu, x, prev, R, R2, false);
      LayerRun got = run_layer(*gpu, x, prev, R, R2, true);

      const Tol tol = layer_tol(dtype);
      EXPECT_TRUE(got.out.y.device().is_cuda());
      expect_close(got.out.y, want.out.y, tol, what + " y");
      expect_close(got.out.dispatch, want.out.dispatch, tol, what + " dispatch");
      expect_close(got.out.combine, want.out.combine, tol, what + " combine");
      EXPECT_TRUE(got.out.assignments.indices.device().is_cuda());
      EXPECT_EQ(got.out.assignments.indices.to_indices(), want.out.assignments.indices.to_indices()) << what;
      expect_close(got.out.assignments.logits, want.out.assignments.logits, tol, what + " handed-on logits");
      EXPECT_EQ(got.stats.tokens_per_expert, want.stats.tokens_per_expert) << what;
      if (c.ac) {
        EXPECT_NEAR(got.stats.ac_mean, want.stats.ac_mean, tol.rtol * std::fabs(want.stats.ac_mean)) << what;
        EXPECT_NEAR(got.stats.ac_max, want.stats.ac_max, tol.rtol * std::fabs(want.stats.ac_max)) << what;
      }
      const char* names[] = {"dx", "dphi", "dscale", "dw1", "db1", "dw2", "db2", "dprevious logits"};
      for (size_t i = 0; i < want.grads.size(); ++i) {
        ASSERT_EQ(got.grads[i].defined(), want.grads[i].defined()) << what << " " << names[i];
        if (want.grads[i].defined()) expect_close(got.grads[i], want.grads[i], tol, what + " " + names[i]);
      }
    }
}

TEST(CudaSoftMoE, ChainHandsDeviceAssignmentsOn) {
  MG_SKIP_WITHOUT_CUDA();
  SoftMoEConfig plain_cfg;
  plain_cfg.dim = 4, plain_cfg.hidden = 3, plain_cfg.experts = 3, plain_cfg.slots = 2, plain_cfg.mix_k = 8;
  SoftMoEConfig ac_cfg = plain_cfg;
  ac_cfg.use_ac = true;
  Generator g(12);
  SoftMoE first(plain_cfg, InitOptions{DType::Float64, &g}), second(ac_cfg, InitOptions{DType::Float64, &g});
  std::shared_ptr<SoftMoE> first_gpu = cuda_copy(first), second_gpu = cuda_copy(second);
  Tensor x = uniform({2, 5, 4}, DType::Float64, 13);
  SoftMoEOutput a = first.forward(x), a_gpu = first_gpu->forward(on_cuda(x));
  SoftMoEOutput b = second.forward(a.y, a.assignments), b_gpu = second_gpu->forward(a_gpu.y, a_gpu.assignments);
  expect_close(b_gpu.y, b.y, layer_tol(DType::Float64), "second layer y");
  EXPECT_EQ(b_gpu.assignments.indices.to_indices(), b.assignments.indices.to_indices());
}

TEST(CudaSoftMoE, GradcheckOnDevice) {
  MG_SKIP_WITHOUT_CUDA();
  for (bool ac : {false, true}) {
    SCOPED_TRACE(ac ? "AC differentiable, mix_k 2" : "without AC");
    SoftMoEConfig cfg;
    cfg.dim = 4, cfg.hidden = 3, cfg.experts = 2, cfg.slots = 2, cfg.mix_k = 2;
    cfg.use_ac = ac, cfg.differentiable = true;
    Generator g(14);
    SoftMoE cpu(cfg, InitOptions{DType::Float64, &g});
    std::shared_ptr<SoftMoE> layer = cuda_copy(cpu);
    Assignments prev = previous(6, 2, DType::Float64, 15);
    Tensor idx = on_cuda(prev.indices);
    std::vector<Tensor> in{on_cuda(uniform({2, 3, 4}, DType::Float64, 16)).requires_grad_()};
    if (ac) in.push_back(on_cuda(prev.logits.detach()).requires_grad_());  // v[1]: the previous logits
    for (const Tensor& p : members(*layer)) in.push_back(p);
    EXPECT_GRADCHECK([layer, idx, ac](const std::vector<Tensor>& v) {
      SoftMoEOutput o = ac ? layer->forward(v[0], {idx, v[1]}) : layer->forward(v[0]);
      return concat({reshape(o.y, {-1}), reshape(o.assignments.logits, {-1})}, 0);
    }, in);
  }
}

TEST(CudaSoftMoE, Errors) {
  MG_SKIP_WITHOUT_CUDA();
  SoftMoEConfig cfg;
  cfg.dim = 4, cfg.hidden = 3, cfg.experts = 2, cfg.slots = 2, cfg.mix_k = 2;
  SoftMoE plain(cfg);
  EXPECT_MG_ERROR(plain.forward(on_cuda(Tensor::zeros({2, 3, 4}))), "SoftMoE: x is on cuda:0 but the parameters on cpu");
  cfg.use_ac = true;
  std::shared_ptr<SoftMoE> ac = cuda_copy(SoftMoE(cfg));
  Tensor x = on_cuda(Tensor::randn({2, 3, 4}));
  // host labels are refused by ac_token_scale (moe/router.cpp) before ac_cluster_weights sees them
  EXPECT_MG_ERROR(ac->forward(x, {Tensor::from_indices({0, 1, 0, 1, 0, 1}, {6, 1}), Tensor()}),
                  "SoftMoE: previous assignments are on cpu but tokens are on cuda:0");
  EXPECT_MG_ERROR(ac->forward(x, {on_cuda(Tensor::from_indices({0, 1, 2, 0, 0, 0}, {6, 1})), Tensor()}),
                  "ac_cluster_weights: label 2 of token 2 outside [0, 2)");
  EXPECT_MG_ERROR(ac->forward(x), "SoftMoE: AC needs the previous MoE layer's assignments");
}
