// AC statistics across ranks under mpirun (2 ranks): with ACOptions::ranks,
// W from each rank's tokens equals the one-process W over the global batch
// (every rank's tokens, in rank order) to 1e-12, for MAD and variance, with
// an empty cluster, official and neutral small clusters, detached and
// differentiable (each rank's dx its rows of the one-process dx); and an
// expert-parallel AC layer with global statistics equals the one-process
// layer over the global batch, forward and backward.
#include "moe/moe_layer.h"
#include "test_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {
constexpr int64_t kDim = 6, kExperts = 4;

int64_t tokens_of(int rank) { return 6 + 3 * rank; }

// Rank r's tokens and previous assignments; the same on every rank that asks.
Tensor tokens(int rank) { return leaf({tokens_of(rank), kDim}, 100 + rank); }
Tensor previous_indices(int rank) { return random_assignment(tokens_of(rank), 2, kExperts - 1, 300 + rank); }
Tensor previous_logits(int rank) { return leaf({tokens_of(rank), 2}, 400 + rank).detach(); }

// The global batch: every rank's rows in rank order.
Tensor all_ranks(int ranks, Tensor (*of)(int)) {
  std::vector<Tensor> parts;
  for (int r = 0; r < ranks; ++r) parts.push_back(of(r));
  return concat(parts, 0);
}
}  // namespace

TEST(MpiACStatistics, WOverRanksEqualsWOverTheGlobalBatch) {
  dist::CommPtr comm = dist::world();
  const int ranks = comm->world_size(), rank = comm->rank();
  NoGradGuard no_grad;
  // labels in [0, E - 1): the last cluster is empty on every rank
  const Tensor labels = narrow(previous_indices(rank), 1, 0, 1).detach();
  const Tensor global_labels = narrow(all_ranks(ranks, previous_indices), 1, 0, 1);
  for (ACStat stat : {ACStat::MAD, ACStat::Variance})
    for (ACSmallClusters small : {ACSmallClusters::Official, ACSmallClusters::Neutral}) {
      ACOptions local;
      local.stat = stat, local.small_clusters = small;
      ACOptions global = local;
      global.ranks = comm;
      const Tensor W = ac_cluster_weights(tokens(rank), squeeze(labels, 1), kExperts, global);
      const Tensor want = ac_cluster_weights(all_ranks(ranks, tokens), squeeze(global_labels, 1), kExperts, local);
      expect_near(values(W), values(want), 1e-12);
    }
}

// The differentiable W over ranks: each rank's loss weights W with its own
// G_r; one process holds every token and the sum of the losses. Each rank's
// dx is its rows of the one-process dx, to 1e-12.
Tensor loss_weights(int rank) { return leaf({kExperts, kDim}, 500 + rank).detach(); }

TEST(MpiACStatistics, DifferentiableWOverRanksEqualsOneProcess) {
  dist::CommPtr comm = dist::world();
  const int ranks = comm->world_size(), rank = comm->rank();
  const Tensor labels = squeeze(narrow(previous_indices(rank), 1, 0, 1), 1);
  const Tensor global_labels = squeeze(narrow(all_ranks(ranks, previous_indices), 1, 0, 1), 1);
  int64_t first = 0;
  for (int r = 0; r < rank; ++r) first += tokens_of(r);
  for (ACStat stat : {ACStat::MAD, ACStat::Variance})
    for (ACSmallClusters small : {ACSmallClusters::Official, ACSmallClusters::Neutral})
      for (ACScaling scaling : {ACScaling::PerFeature, ACScaling::Global}) {
        ACOptions local;
        local.stat = stat, local.small_clusters = small, local.scaling = scaling;
        ACOptions global = local;
        global.ranks = comm;
        const Tensor x = tokens(rank);
        Tensor x_all = all_ranks(ranks, tokens).detach();
        x_all.requires_grad_();
        const Tensor W = ac_cluster_weights(x, labels, kExperts, global);
        sum(mul(W, loss_weights(rank))).backward();
        const Tensor W_all = ac_cluster_weights(x_all, global_labels, kExperts, local);
        sum(mul(W_all, sum(reshape(all_ranks(ranks, loss_weights), {ranks, kExperts, kDim}), {0}))).backward();
        expect_near(values(W), values(W_all), 1e-12);
        expect_near(values(x.grad()), values(narrow(x_all.grad(), 0, first, tokens_of(rank))), 1e-12);
      }
}

TEST(MpiACStatistics, ExpertParallelLayerWithGlobalStatisticsEqualsOneProcess) {
  dist::CommPtr comm = dist::world();
  const int ranks = comm->world_size(), rank = comm->rank();
  MoEConfig c;
  c.dim = kDim, c.hidden = 5, c.experts = kExperts, c.k = 2, c.use_ac = true, c.ac.mix_m = 2;
  MoEConfig c_global = c;
  c_global.ac.stats.ranks = comm;
  Generator gen_parallel(11), gen_single(11);
  MoELayer parallel(c_global, InitOptions{DType::Float64, &gen_parallel}, comm);
  MoELayer single(c, InitOptions{DType::Float64, &gen_single});

  const Tensor x = tokens(rank);
  Tensor x_all = all_ranks(ranks, tokens).detach();
  x_all.requires_grad_();
  const Tensor weights = leaf({tokens_of(rank), kDim}, 200 + rank);
  const Tensor y = parallel.forward(x, {previous_indices(rank), previous_logits(rank)}).y;
  sum(mul(y, weights)).backward();
  const Tensor y_all = single.forward(x_all, {all_ranks(ranks, previous_indices), all_ranks(ranks, previous_logits)}).y;
  sum(mul(y_all, all_ranks(ranks, [](int r) { return leaf({tokens_of(r), kDim}, 200 + r); }))).backward();

  int64_t first = 0;
  for (int r = 0; r < rank; ++r) first += tokens_of(r);
  expect_near(values(y), values(narrow(y_all, 0, first, tokens_of(rank))), 1e-12);
  expect_near(values(x.grad()), values(narrow(x_all.grad(), 0, first, tokens_of(rank))), 1e-12);
  // the router's gradient: this rank's share, summed over the ranks
  const auto p = parallel.router->named_parameters(), s = single.router->named_parameters();
  for (size_t i = 0; i < p.size(); ++i) {
    Tensor total = clone(p[i].second.grad());
    comm->all_reduce_sum({total});
    expect_near(values(total), values(s[i].second.grad()), 1e-12);
  }
  const int64_t local = parallel.experts->experts;
  expect_near(values(parallel.experts->w1.grad()),
              values(narrow(single.experts->w1.grad(), 0, parallel.first_expert, local)), 1e-12);
  expect_near(values(parallel.experts->b2.grad()),
              values(narrow(single.experts->b2.grad(), 0, parallel.first_expert, local)), 1e-12);
}
