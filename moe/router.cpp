// Top-k and AC routers (see router.h).
#include "moe/router.h"

#include <cmath>

#include "autograd/ops/util.h"

namespace moegrad {

Tensor switch_balance_loss(const Tensor& logits, const Tensor& indices) {
  check_float(logits, "switch_balance_loss", "logits");
  check_index(indices, "switch_balance_loss", "indices");
  MG_CHECK(logits.dim() == 2 && indices.dim() == 2 && indices.size(0) == logits.size(0),
           "switch_balance_loss: expected logits [n, E] and indices [n, k], got ", shape_str(logits.shape()), " and ",
           shape_str(indices.shape()));
  const int64_t E = logits.size(1);
  std::vector<double> f(E, 0.0);
  const std::vector<int64_t> idx = indices.to_indices();
  for (int64_t e : idx) {
    MG_CHECK(e >= 0 && e < E, "switch_balance_loss: expert index ", e, " outside [0, ", E, ")");
    f[e] += 1.0 / static_cast<double>(idx.size());
  }
  Tensor share = Tensor::from_vector(f, {E}, logits.dtype());
  Tensor mean_prob = mean(softmax(logits, -1), {0});
  return mul(sum(mul(share, mean_prob)), static_cast<double>(E));
}

Tensor router_z_loss(const Tensor& logits) {
  check_float(logits, "router_z_loss", "logits");
  MG_CHECK(logits.dim() == 2, "router_z_loss: expected logits [n, E], got ", shape_str(logits.shape()));
  // logsumexp = x_0 - log_softmax(x)_0, differentiable through both ops
  Tensor lse = sub(narrow(logits, 1, 0, 1), narrow(log_softmax(logits, -1), 1, 0, 1));
  return mean(mul(lse, lse));
}

TopKRouter::TopKRouter(const RouterConfig& c, const InitOptions& opt) : config(c) {
  MG_CHECK(c.dim > 0 && c.experts > 0, "TopKRouter: dim and experts must be positive, got dim=", c.dim,
           " experts=", c.experts);
  MG_CHECK(c.k >= 1 && c.k <= c.experts, "TopKRouter: k must be in [1, experts=", c.experts, "], got ", c.k);
  const double bound = 1.0 / std::sqrt(static_cast<double>(c.dim));
  weight = register_parameter("weight", init_uniform({c.experts, c.dim}, bound, opt));
  if (c.gate == GateKind::Linear) bias = register_parameter("bias", init_uniform({c.experts}, bound, opt));
}

Tensor TopKRouter::gate_logits(const Tensor& x) const {
  MG_CHECK(x.defined() && x.dim() == 2 && x.size(1) == config.dim, "router: expected tokens [n, ", config.dim,
           "], got ", x.defined() ? shape_str(x.shape()) : "undefined");
  if (config.gate == GateKind::Linear) return add(matmul(x, transpose(weight, 0, 1)), bias);
  Tensor unit = div(weight, sqrt(add(sum(mul(weight, weight), {1}, true), 1e-12)));
  return matmul(x, transpose(unit, 0, 1));
}

RouterOutput TopKRouter::route(const Tensor& logits) const {
  RouterOutput out;
  out.logits = logits;
  TopK top = topk(logits, config.k, -1);
  out.indices = top.indices;
  out.topk_logits = top.values;
  out.scores = softmax(top.values, -1);
  out.balance_loss = switch_balance_loss(logits, top.indices);
  out.z_loss = router_z_loss(logits);
  return out;
}

RouterOutput TopKRouter::forward(const Tensor& x) {
  RouterOutput out = route(gate_logits(x));
  out.scaled_input = x;
  return out;
}

ACRouter::ACRouter(const RouterConfig& c, const ACConfig& a, const InitOptions& opt) : TopKRouter(c, opt), ac(a) {
  MG_CHECK(a.mix_m >= 1 && a.mix_m <= c.experts, "ACRouter: mix_m must be in [1, experts=", c.experts, "], got ",
           a.mix_m);
}

ACScale ac_token_scale(const Tensor& x, const Assignments& prev, int64_t experts, const ACOptions& options,
                       int64_t mix_m, bool differentiable, const char* caller) {
  MG_CHECK(prev.defined(), caller, ": AC needs the previous MoE layer's assignments (the first MoE layer of a model ",
           "must use the top-k router)");
  MG_CHECK(x.defined() && x.dim() == 2 && prev.indices.dim() == 2 && prev.indices.size(0) == x.size(0) &&
               prev.indices.size(1) > 0,
           caller, ": previous assignments ", shape_str(prev.indices.shape()), " do not match tokens ",
           x.defined() ? shape_str(x.shape()) : "undefined");
  MG_CHECK(mix_m == 1 || (prev.logits.defined() && prev.logits.shape() == prev.indices.shape()), caller,
           ": mixing over the previous top ", mix_m, " needs their logits of shape ", shape_str(prev.indices.shape()),
           ", got ", prev.logits.defined() ? shape_str(prev.logits.shape()) : "undefined");
  MG_CHECK(mix_m == 1 || prev.logits.dtype() == x.dtype(), caller, ": previous logits are ",
           dtype_name(prev.logits.dtype()), " but tokens are ", dtype_name(x.dtype()));
  Tensor labels = contiguous(squeeze(narrow(prev.indices, 1, 0, 1), 1));
  ACScale out;
  if (differentiable) {
    out.W = ac_cluster_weights(x, labels, experts, options);
  } else {
    NoGradGuard no_grad;
    out.W = ac_cluster_weights(x.detach(), labels, experts, options);
  }
  if (mix_m == 1) {
    out.scaled = ac_scale_gather(x, out.W, labels);
  } else {
    Tensor mix_logits = narrow(prev.logits, 1, 0, mix_m);
    if (!differentiable) mix_logits = mix_logits.detach();
    out.scaled = ac_scale_gather(x, out.W, contiguous(narrow(prev.indices, 1, 0, mix_m)), softmax(mix_logits, -1));
  }
  return out;
}

RouterOutput ACRouter::forward(const Tensor& x, const Assignments& prev) {
  MG_CHECK(!prev.defined() || prev.indices.dim() != 2 || prev.indices.size(1) >= ac.mix_m, "ACRouter: mixing over the top ",
           ac.mix_m, " needs at least that many previous choices, got ", prev.indices.size(1));
  ACScale scale = ac_token_scale(x, prev, config.experts, ac.stats, ac.mix_m, ac.differentiable, "ACRouter");
  RouterOutput out = route(gate_logits(scale.scaled));
  out.scaled_input = scale.scaled;
  out.ac_weights = scale.W;
  return out;
}

}  // namespace moegrad
