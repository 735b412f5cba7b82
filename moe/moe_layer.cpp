// MoE layer: route, dispatch, experts, combine (see moe_layer.h).
#include "moe/moe_layer.h"

#include <algorithm>
#include <cmath>

namespace moegrad {

MoELayer::MoELayer(const MoEConfig& c, const InitOptions& opt) : config(c) {
  MG_CHECK(c.dim > 0 && c.hidden > 0 && c.experts > 0, "MoELayer: dim, hidden and experts must be positive, got ",
           c.dim, ", ", c.hidden, ", ", c.experts);
  RouterConfig rc{c.dim, c.experts, c.k, c.gate, c.embedding_gain, c.embedding_norm};
  if (c.use_ac)
    router = register_module("router", std::make_shared<ACRouter>(rc, c.ac, opt));
  else
    router = register_module("router", std::make_shared<TopKRouter>(rc, opt));
  experts = register_module("experts", std::make_shared<StackedExperts>(c.experts, c.dim, c.hidden, opt, c.expert));
}

void ac_weight_stats(const Tensor& W, const Tensor& index, const Tensor& mix, RoutingStats& s) {
  const std::vector<double> v = W.to_vector();
  double sum = 0, sq = 0;
  s.ac_min = INFINITY, s.ac_max = -INFINITY;
  for (double x : v) {
    sum += x, sq += x * x;
    s.ac_min = std::min(s.ac_min, x), s.ac_max = std::max(s.ac_max, x);
  }
  s.ac_mean = sum / v.size();
  s.ac_std = std::sqrt(std::max(0.0, sq / v.size() - s.ac_mean * s.ac_mean));
  // cluster sizes from the labels; the mean of w_i = Σ_j mix_ij W[c_ij] over
  // tokens and features, from each row's mean over features
  const int64_t rows = W.size(0), d = W.size(1), n = index.size(0), m = index.size(1);
  const std::vector<int64_t> idx = index.to_indices();
  const std::vector<double> weights = mix.defined() ? mix.to_vector() : std::vector<double>(idx.size(), 1.0);
  std::vector<int64_t> count(rows, 0);
  std::vector<double> row_mean(rows, 0.0);
  for (int64_t i = 0; i < n; ++i) count[idx[i * m]]++;
  for (int64_t e = 0; e < rows; ++e)
    for (int64_t f = 0; f < d; ++f) row_mean[e] += v[e * d + f] / d;
  s.ac_empty = static_cast<double>(std::count(count.begin(), count.end(), 0));
  s.ac_single = static_cast<double>(std::count(count.begin(), count.end(), 1));
  s.ac_token_weight = 0;
  for (size_t p = 0; p < idx.size(); ++p) s.ac_token_weight += weights[p] * row_mean[idx[p]] / static_cast<double>(n);
}

MoEOutput MoELayer::forward(const Tensor& x, const Assignments& previous, const ACStatistics* statistics) {
  MG_CHECK(x.defined() && x.dim() == 2 && x.size(1) == config.dim, "MoELayer: expected tokens [n, ", config.dim,
           "], got ", x.defined() ? shape_str(x.shape()) : "undefined");
  RouterOutput r = router->forward(x, previous, statistics);
  PlanPtr plan = make_routing_plan(r.indices, config.experts, config.capacity_factor);
  Tensor expert_in = config.use_ac && config.scale_expert_input ? r.scaled_input : x;
  Tensor y = moe_combine(experts->forward(moe_permute(expert_in, plan), plan), r.scores, plan);

  last_stats = RoutingStats();
  last_stats.tokens_per_expert = plan->counts;
  last_stats.dropped = plan->dropped();
  last_stats.balance_loss = r.balance_loss.item();
  last_stats.z_loss = r.z_loss.item();
  if (r.ac_weights.defined()) ac_weight_stats(r.ac_weights, r.ac_index, r.ac_mix, last_stats);
  return {y, r.balance_loss, r.z_loss, r.assignments()};
}

}  // namespace moegrad
