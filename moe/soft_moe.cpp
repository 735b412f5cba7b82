// Soft MoE forward (see soft_moe.h): normalise, (AC) scale, dispatch to slots,
// run the experts batched, combine. Built from differentiable ops; the
// backward is theirs. On a CUDA device the same ops run their kernels; the
// handed-on experts (slot / p) are computed on the host from the top slots
// (n · mix_k integers), which the routing statistics read anyway.
#include "moe/soft_moe.h"

#include <algorithm>
#include <cmath>

#include "autograd/node.h"

namespace moegrad {

namespace {

// Inside the L2 norms: x / sqrt(Σ x² + eps), as the paper's l2_normalize.
constexpr double kNormEps = 1e-6;

Tensor l2_normalize(const Tensor& x, int64_t dim) { return div(x, sqrt(add(sum(mul(x, x), {dim}, true), kNormEps))); }

}  // namespace

SoftMoE::SoftMoE(const SoftMoEConfig& c, const InitOptions& opt) : config(c) {
  MG_CHECK(c.dim > 0 && c.hidden > 0 && c.experts > 0 && c.slots > 0,
           "SoftMoE: dim, hidden, experts and slots must be positive, got ", c.dim, ", ", c.hidden, ", ", c.experts,
           ", ", c.slots);
  MG_CHECK(c.mix_k >= 1, "SoftMoE: mix_k must be at least 1, got ", c.mix_k);
  MG_CHECK(!c.use_ac || (c.ac.eps > 0 && std::isfinite(c.ac.eps)), "SoftMoE: AC eps must be positive and finite, got ",
           c.ac.eps);
  phi = register_parameter("phi", init_normal({c.dim, c.experts * c.slots}, 1.0 / std::sqrt(double(c.dim)), opt));
  scale = register_parameter("scale", Tensor::ones({1}, opt.dtype));
  experts = register_module("experts", std::make_shared<StackedExperts>(c.experts, c.dim, c.hidden, opt));
}

SoftMoEOutput SoftMoE::forward(const Tensor& x, const Assignments& previous) {
  const int64_t E = config.experts, p = config.slots, S = E * p, d = config.dim;
  MG_CHECK(x.defined() && x.dim() == 3 && x.size(2) == d && x.size(0) > 0 && x.size(1) > 0,
           "SoftMoE: expected x [b, m, ", d, "] with b, m > 0, got ", x.defined() ? shape_str(x.shape()) : "undefined");
  MG_CHECK(x.dtype() == phi.dtype(), "SoftMoE: x has dtype ", dtype_name(x.dtype()), " but the parameters ",
           dtype_name(phi.dtype()));
  MG_CHECK(x.device() == phi.device(), "SoftMoE: x is on ", x.device().str(), " but the parameters on ",
           phi.device().str());
  const int64_t b = x.size(0), m = x.size(1), n = b * m;

  Tensor xt = l2_normalize(x, 2);                            // [b, m, d]
  ACScale ac;
  Tensor phit = mul(l2_normalize(phi, 0), scale);            // [d, S]
  if (config.use_ac) {
    const int64_t use = previous.defined() ? std::min(config.mix_k, previous.indices.size(1)) : 1;
    ac = ac_token_scale(reshape(xt, {n, d}), previous, E, config.ac, use, config.differentiable, "SoftMoE");
    xt = reshape(ac.scaled, {b, m, d});
  }

  Tensor logits = matmul(xt, phit);                          // [b, m, S]
  Tensor dispatch = softmax(logits, 1);                      // over the m tokens
  Tensor combine = softmax(logits, 2);                       // over the S slots
  Tensor slots = matmul(transpose(dispatch, 1, 2), xt);      // [b, S, d]
  // experts: [b, E, p, d] -> [E, b*p, d], one batched matmul per layer
  Tensor xs = reshape(permute(reshape(slots, {b, E, p, d}), {1, 0, 2, 3}), {E, b * p, d});
  Tensor ys = experts->forward_batched(xs);                  // [E, b*p, d]
  ys = reshape(permute(reshape(ys, {E, b, p, d}), {1, 0, 2, 3}), {b, S, d});
  Tensor y = matmul(combine, ys);                            // [b, m, d]

  // handed on: the experts of each token's top slots (top by combine weight = top by logit)
  const int64_t k = std::min(config.mix_k, S);
  TopK top = topk(reshape(logits, {n, S}), k, -1);
  std::vector<int64_t> slot_expert = top.indices.to_indices();
  for (int64_t& e : slot_expert) e /= p;
  last_stats = RoutingStats();
  last_stats.tokens_per_expert.assign(E, 0);
  for (int64_t i = 0; i < n; ++i) last_stats.tokens_per_expert[slot_expert[i * k]]++;
  const Tensor top_experts = Tensor::from_indices(slot_expert, top.indices.shape()).to(x.device());
  if (ac.W.defined()) ac_weight_stats(ac.W, ac.index, ac.mix, last_stats);
  return {y, {top_experts, top.values}, dispatch, combine};
}

}  // namespace moegrad
