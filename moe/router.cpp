// Top-k and AC routers (see router.h), composed of ops that run on either device.
#include "moe/router.h"

#include <cmath>

#include "autograd/ops/util.h"

namespace moegrad {

RouterTopK router_topk_softmax(const Tensor& logits, int64_t k) {
  check_float(logits, "router_topk_softmax", "logits");
  MG_CHECK(logits.dim() == 2, "router_topk_softmax: expected logits [n, E], got ", shape_str(logits.shape()));
  MG_CHECK(k >= 1 && k <= logits.size(1), "router_topk_softmax: k = ", k, " out of range [1, ", logits.size(1),
           "] for logits ", shape_str(logits.shape()));
  TopK top = topk(logits, k, -1);
  return {top.values, top.indices, softmax(top.values, -1)};
}

Tensor switch_balance_loss(const Tensor& logits, const Tensor& indices) {
  check_float(logits, "switch_balance_loss", "logits");
  check_index(indices, logits.device(), "switch_balance_loss", "indices");
  MG_CHECK(logits.dim() == 2 && indices.dim() == 2 && indices.size(0) == logits.size(0),
           "switch_balance_loss: expected logits [n, E] and indices [n, k], got ", shape_str(logits.shape()), " and ",
           shape_str(indices.shape()));
  MG_CHECK(logits.size(0) > 0 && logits.size(1) > 0, "switch_balance_loss: logits ", shape_str(logits.shape()),
           " have no tokens or no experts");
  const int64_t E = logits.size(1);
  std::vector<double> f(E, 0.0);
  const std::vector<int64_t> idx = indices.to_indices();
  for (int64_t e : idx) {
    MG_CHECK(e >= 0 && e < E, "switch_balance_loss: expert index ", e, " outside [0, ", E, ")");
    f[e] += 1.0 / static_cast<double>(idx.size());
  }
  Tensor share = Tensor::from_vector(f, {E}, logits.dtype()).to(logits.device());
  Tensor mean_prob = mean(softmax(logits, -1), {0});
  return mul(sum(mul(share, mean_prob)), static_cast<double>(E));
}

Tensor router_z_loss(const Tensor& logits) {
  check_float(logits, "router_z_loss", "logits");
  MG_CHECK(logits.dim() == 2, "router_z_loss: expected logits [n, E], got ", shape_str(logits.shape()));
  MG_CHECK(logits.size(0) > 0 && logits.size(1) > 0, "router_z_loss: logits ", shape_str(logits.shape()),
           " have no tokens or no experts");
  // logsumexp = x_0 - log_softmax(x)_0, differentiable through both ops
  Tensor lse = sub(narrow(logits, 1, 0, 1), narrow(log_softmax(logits, -1), 1, 0, 1));
  return mean(mul(lse, lse));
}

TopKRouter::TopKRouter(const RouterConfig& c, const InitOptions& opt) : config(c) {
  MG_CHECK(c.dim > 0 && c.experts > 0, "TopKRouter: dim and experts must be positive, got dim=", c.dim,
           " experts=", c.experts);
  MG_CHECK(c.k >= 1 && c.k <= c.experts, "TopKRouter: k must be in [1, experts=", c.experts, "], got ", c.k);
  MG_CHECK(c.embedding_gain >= 0 && c.embedding_norm >= 0 && std::isfinite(c.embedding_gain) &&
               std::isfinite(c.embedding_norm) &&
               (c.gate == GateKind::Cosine || (c.embedding_gain == 0 && c.embedding_norm == 0)),
           "TopKRouter: embedding_gain and embedding_norm are for the cosine gate and must be finite and >= 0, got ",
           c.embedding_gain, " and ", c.embedding_norm);
  const double bound = 1.0 / std::sqrt(static_cast<double>(c.dim));
  weight = register_parameter("weight", c.embedding_gain > 0 ? init_orthogonal(c.experts, c.dim, c.embedding_gain, opt)
                                                             : init_uniform({c.experts, c.dim}, bound, opt));
  if (c.gate == GateKind::Linear)
    bias = register_parameter("bias", init_uniform({c.experts}, bound, opt));
  else
    opt.generator().take(c.experts);  // as many draws as the linear gate: the layers after start alike

}

// ‖w‖ per row, as [E, 1].
static Tensor row_norms(const Tensor& w, double eps) { return sqrt(add(sum(mul(w, w), {1}, true), eps)); }

Tensor TopKRouter::gate_logits(const Tensor& x) {
  MG_CHECK(x.defined() && x.dim() == 2 && x.size(1) == config.dim, "router: expected tokens [n, ", config.dim,
           "], got ", x.defined() ? shape_str(x.shape()) : "undefined");
  if (config.gate == GateKind::Linear) return add(matmul(x, transpose(weight, 0, 1)), bias);
  if (config.embedding_norm > 0) {
    NoGradGuard no_grad;
    weight.copy_(mul(div(weight, row_norms(weight, 0.0)), config.embedding_norm));
  }
  Tensor unit = div(weight, row_norms(weight, 1e-12));
  return matmul(x, transpose(unit, 0, 1));
}

RouterOutput TopKRouter::route(const Tensor& logits) const {
  RouterOutput out;
  out.logits = logits;
  RouterTopK top = router_topk_softmax(logits, config.k);
  out.indices = top.indices;
  out.topk_logits = top.values;
  out.scores = top.scores;
  out.balance_loss = switch_balance_loss(logits, top.indices);
  out.z_loss = router_z_loss(logits);
  return out;
}

RouterOutput TopKRouter::forward(const Tensor& x, const Assignments&, const ACStatistics*) {
  RouterOutput out = route(gate_logits(x));
  out.scaled_input = x;
  return out;
}

ACRouter::ACRouter(const RouterConfig& c, const ACConfig& a, const InitOptions& opt) : TopKRouter(c, opt), ac(a) {
  MG_CHECK(a.mix_m >= 1 && a.mix_m <= c.experts, "ACRouter: mix_m must be in [1, experts=", c.experts, "], got ",
           a.mix_m);
}

RouterOutput ACRouter::forward(const Tensor& x, const Assignments& prev, const ACStatistics* statistics) {
  ACOptions options = ac.stats;
  if (!training()) options.ranks = nullptr;  // evaluation: one rank's own batch
  ACScale scale =
      ac_token_scale(x, prev, config.experts, options, ac.mix_m, ac.differentiable, "ACRouter", statistics);
  RouterOutput out = route(gate_logits(scale.scaled));
  out.scaled_input = scale.scaled;
  out.ac_weights = scale.W, out.ac_index = scale.index, out.ac_mix = scale.mix;
  return out;
}

}  // namespace moegrad
