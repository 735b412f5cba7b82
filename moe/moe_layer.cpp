// MoE layer: route, dispatch, experts, combine (see moe_layer.h).
#include "moe/moe_layer.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "autograd/node.h"
#include "dist/all_to_all_op.h"

namespace moegrad {

MoELayer::MoELayer(const MoEConfig& c, const InitOptions& opt, dist::CommPtr comm) : config(c) {
  MG_CHECK(c.dim > 0 && c.hidden > 0 && c.experts > 0, "MoELayer: dim, hidden and experts must be positive, got ",
           c.dim, ", ", c.hidden, ", ", c.experts);
  RouterConfig rc{c.dim, c.experts, c.k, c.gate, c.embedding_gain, c.embedding_norm};
  if (c.use_ac)
    router = register_module("router", std::make_shared<ACRouter>(rc, c.ac, opt));
  else
    router = register_module("router", std::make_shared<TopKRouter>(rc, opt));
  auto all_experts = std::make_shared<StackedExperts>(c.experts, c.dim, c.hidden, opt, c.expert);
  if (!comm || comm->world_size() == 1) {
    experts = register_module("experts", all_experts);
    return;
  }
  const int64_t ranks = comm->world_size(), local = c.experts / ranks;
  MG_CHECK(c.experts % ranks == 0, "MoELayer: ", c.experts, " experts cannot be split evenly over ", ranks,
           " ranks; expert parallelism needs a number of experts divisible by the number of ranks");
  expert_comm = comm;
  first_expert = comm->rank() * local;
  // this rank's experts, with the weights they have in a one-process layer
  Generator unused;
  auto mine = std::make_shared<StackedExperts>(local, c.dim, c.hidden, InitOptions{opt.dtype, &unused}, c.expert);
  NoGradGuard no_grad;
  for (auto [to, from] : {std::pair{mine->w1, all_experts->w1}, std::pair{mine->b1, all_experts->b1},
                          std::pair{mine->w2, all_experts->w2}, std::pair{mine->b2, all_experts->b2}})
    to.copy_(narrow(from, 0, first_expert, local));
  experts = register_module("experts", mine);
}

void ac_weight_stats(const Tensor& W, const Tensor& index, const Tensor& mix, RoutingStats& s) {
  const char* op = "ac_weight_stats";
  MG_CHECK(W.defined() && W.dim() == 2 && W.numel() > 0, op, ": expected weights W [rows, d] with rows, d >= 1, got ",
           W.defined() ? shape_str(W.shape()) : "undefined");
  MG_CHECK(index.defined() && index.dtype() == DType::Int64 && index.dim() == 2 && index.size(0) > 0 &&
               index.size(1) > 0,
           op, ": expected index int64 [n, m] with n, m >= 1, got ",
           index.defined() ? dtype_name(index.dtype()) + std::string(" ") + shape_str(index.shape()) : "undefined");
  MG_CHECK(!mix.defined() || mix.shape() == index.shape(), op, ": mix must have the index's shape ",
           shape_str(index.shape()), ", got ", mix.defined() ? shape_str(mix.shape()) : "");
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
  for (size_t p = 0; p < idx.size(); ++p)
    MG_CHECK(idx[p] >= 0 && idx[p] < rows, op, ": index ", idx[p], " at position ", p, " is outside [0, ", rows, ")");
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
  auto check_input = [&] {
    MG_CHECK(x.defined() && x.dim() == 2 && x.size(1) == config.dim, "MoELayer: expected tokens [n, ", config.dim,
             "], got ", x.defined() ? shape_str(x.shape()) : "undefined");
  };
  RouterOutput r;
  PlanPtr plan;
  Tensor xp;
  std::string failure;  // this rank's routing error, under expert parallelism
  auto route = [&] {
    check_input();
    r = router->forward(x, previous, statistics);
    plan = make_routing_plan(r.indices, config.experts, config.capacity_factor);
    xp = moe_permute(config.use_ac && config.scale_expert_input ? r.scaled_input : x, plan);
  };
  if (!expert_comm) {
    route();
  } else if (!(config.use_ac && config.ac.stats.ranks)) {
    // The other ranks will wait for this one's rows: a failure while routing
    // (bad input, a router's check) travels with the expert counts and fails
    // every rank with its message (run_experts_over_ranks).
    try {
      route();
    } catch (const std::exception& e) {
      failure = *e.what() ? e.what() : "failed";
      plan = nullptr;
    }
  } else {
    // AC statistics over the ranks exchange inside the router (each exchange
    // agrees on its arguments first): only the input is checked here.
    dist::run_on_all_or_fail(*expert_comm, check_input);
    route();
  }
  Tensor yp = expert_comm ? run_experts_over_ranks(xp, plan.get(), failure) : experts->forward(xp, plan);
  Tensor y = moe_combine(yp, r.scores, plan);

  last_stats = RoutingStats();
  last_stats.tokens_per_expert = plan->counts;
  last_stats.dropped = plan->dropped();
  last_stats.balance_loss = r.balance_loss.item();
  last_stats.z_loss = r.z_loss.item();
  if (r.ac_weights.defined()) ac_weight_stats(r.ac_weights, r.ac_index, r.ac_mix, last_stats);
  return {y, r.balance_loss, r.z_loss, r.assignments()};
}

Tensor MoELayer::run_experts_over_ranks(const Tensor& xp, const RoutingPlan* plan, const std::string& failure) {
  const int ranks = expert_comm->world_size();
  const int64_t E = config.experts, local = E / ranks;
  // row e: (the rows for expert e, whether this rank failed to route); after the
  // exchange, row r * local + j: what rank r sends to this rank's expert j
  std::vector<int64_t> status(2 * E, 0);
  for (int64_t e = 0; e < E; ++e) status[2 * e] = plan ? plan->counts[e] : 0, status[2 * e + 1] = plan ? 0 : 1;
  const std::vector<int64_t> per_rank(ranks, local);
  const std::vector<int64_t> counts =
      expert_comm->all_to_all(Tensor::from_indices(status, {E, 2}), per_rank, per_rank).to_indices();
  for (int r = 0; r < ranks; ++r)  // every rank sees every rank's flag (its own included)
    if (counts[2 * r * local + 1]) dist::throw_failure_of(*expert_comm, r, failure);
  // the rows for rank s: its experts' blocks, contiguous in the plan's expert order
  std::vector<int64_t> send(ranks, 0);
  for (int64_t e = 0; e < E; ++e) send[e / local] += plan->counts[e];
  std::vector<int64_t> recv(ranks, 0), row_expert;
  for (int r = 0; r < ranks; ++r)
    for (int64_t j = 0; j < local; ++j) {
      const int64_t rows = counts[2 * (r * local + j)];
      recv[r] += rows;
      row_expert.insert(row_expert.end(), rows, j);
    }
  const Tensor received = dist::all_to_all_rows(expert_comm, xp, send, recv);  // by sender, then expert
  // this rank's experts over what it received: grouped by expert, run, put back in received order
  const int64_t rows = received.size(0);
  const PlanPtr mine = make_routing_plan(Tensor::from_indices(row_expert, {rows, 1}).to(xp.device()), local);
  const Tensor ones = Tensor::ones({rows, 1}, xp.dtype(), xp.device());
  const Tensor outputs = moe_combine(experts->forward(moe_permute(received, mine), mine), ones, mine);
  return dist::all_to_all_rows(expert_comm, outputs, recv, send);
}

}  // namespace moegrad
