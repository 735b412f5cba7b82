// Expert parallelism under mpirun (2 ranks; 4 in the FourRanks tests): a MoE
// layer whose experts are split over the ranks gives, on each rank's tokens,
// the outputs and gradients of the one-process layer, top-k and AC (detached
// and differentiable), with and without a capacity, to 1e-12 in float64.
// Each rank holds a different number of tokens; the experts' gradients are
// the one-process layer's summed over every rank's tokens. A whole sgsc
// language model trained so (train_lm --expert-parallel) has the gradients
// of the one-process model on the whole batch.
#include "dist/all_to_all_op.h"
#include "dist/data_parallel.h"
#include "moe/moe_layer.h"
#include "moe/transformer_lm.h"
#include "test_helpers.h"

using namespace moegrad;
using namespace moegrad::testing;

namespace {
constexpr int64_t kDim = 6, kHidden = 5, kExperts = 4;

struct Variant {
  bool ac = false, differentiable = false;  // AC router; its W and mixing differentiable
  double capacity_factor = 0;               // > 0: slots past each expert's capacity dropped
};

MoEConfig layer_config(const Variant& v) {
  MoEConfig c;
  c.dim = kDim, c.hidden = kHidden, c.experts = kExperts, c.k = 2;
  c.use_ac = v.ac;
  c.ac.differentiable = v.differentiable;
  if (v.differentiable) c.ac.mix_m = 2;
  c.capacity_factor = v.capacity_factor;
  return c;
}

std::shared_ptr<MoELayer> make_layer(const MoEConfig& c, const dist::CommPtr& comm) {
  Generator gen(11);
  return std::make_shared<MoELayer>(c, InitOptions{DType::Float64, &gen}, comm);
}

// A loss of every output and the balance loss, forward and backward; returns y.
Tensor forward_backward(MoELayer& layer, const Tensor& x, const Assignments& previous, const Tensor& weights) {
  MoEOutput out = layer.forward(x, previous);
  (sum(mul(out.y, weights)) + out.balance_loss * 0.3).backward();
  return out.y;
}

void expect_expert_parallel_equals_one_process(const Variant& variant) {
  const bool ac = variant.ac;
  dist::CommPtr comm = dist::world();
  const int rank = comm->rank();
  const int64_t tokens = 5 + 2 * rank;  // a different number on each rank
  const Tensor x = leaf({tokens, kDim}, 100 + rank), x_single = leaf({tokens, kDim}, 100 + rank);
  const Tensor weights = leaf({tokens, kDim}, 200 + rank);
  Assignments previous;
  if (ac) previous = {random_assignment(tokens, 2, kExperts, 300 + rank), leaf({tokens, 2}, 400 + rank).detach()};

  auto parallel = make_layer(layer_config(variant), comm);
  auto single = make_layer(layer_config(variant), nullptr);
  ASSERT_EQ(parallel->experts->experts, kExperts / comm->world_size());
  const Tensor y_parallel = forward_backward(*parallel, x, previous, weights);
  const Tensor y_single = forward_backward(*single, x_single, previous, weights);
  expect_near(values(y_parallel), values(y_single), 1e-12);
  expect_near(values(x.grad()), values(x_single.grad()), 1e-12);
  const auto p = parallel->router->named_parameters(), s = single->router->named_parameters();
  for (size_t i = 0; i < p.size(); ++i) expect_near(values(p[i].second.grad()), values(s[i].second.grad()), 1e-12);
  // the experts: the one-process gradients summed over the ranks, this rank's slice
  const int64_t local = parallel->experts->experts;
  const std::vector<std::pair<Tensor, Tensor>> pairs = {{parallel->experts->w1, single->experts->w1},
                                                        {parallel->experts->b1, single->experts->b1},
                                                        {parallel->experts->w2, single->experts->w2},
                                                        {parallel->experts->b2, single->experts->b2}};
  for (const auto& pair : pairs) {
    Tensor total = clone(pair.second.grad());
    comm->all_reduce_sum({total});
    expect_near(values(pair.first), values(narrow(pair.second, 0, parallel->first_expert, local)), 0.0);
    expect_near(values(pair.first.grad()), values(narrow(total, 0, parallel->first_expert, local)), 1e-12);
  }
}
}  // namespace

TEST(MpiExpertParallel, TopKEqualsOneProcess) { expect_expert_parallel_equals_one_process({}); }
TEST(MpiExpertParallel, ACEqualsOneProcess) { expect_expert_parallel_equals_one_process({true}); }
TEST(MpiExpertParallel, DifferentiableACEqualsOneProcess) { expect_expert_parallel_equals_one_process({true, true}); }
TEST(MpiExpertParallel, CapacityEqualsOneProcess) {
  // 0.5: about half of the slots dropped, on each rank's own tokens as one process would
  expect_expert_parallel_equals_one_process({false, false, 0.5});
  expect_expert_parallel_equals_one_process({true, false, 0.5});
}
TEST(MpiExpertParallel, FourRanksTopKEqualsOneProcess) { expect_expert_parallel_equals_one_process({}); }
TEST(MpiExpertParallel, FourRanksACWithCapacityEqualsOneProcess) {
  expect_expert_parallel_equals_one_process({true, true, 0.5});
}

TEST(MpiExpertParallel, ExpertsNotDivisibleByRanksIsAnError) {
  MoEConfig c = layer_config({});
  c.experts = 3;
  EXPECT_MG_ERROR(make_layer(c, dist::world()), "3 experts cannot be split evenly over 2 ranks");
}

TEST(MpiExpertParallel, BadInputOnOneRankIsAnErrorOnEveryRank) {
  // rank 1's tokens have the wrong width, or (AC) its previous assignments the
  // wrong number of rows: every rank throws rank 1's Error instead of waiting
  // for its rows
  dist::CommPtr comm = dist::world();
  const bool bad = comm->rank() == 1;
  auto layer = make_layer(layer_config({}), comm);
  EXPECT_MG_ERROR(layer->forward(leaf({4, bad ? kDim + 1 : kDim}, 1)), "rank 1: MoELayer: expected tokens [n, 6]");
  auto ac = make_layer(layer_config({true}), comm);
  const Assignments previous{random_assignment(bad ? 3 : 4, 2, kExperts, 2), leaf({bad ? 3 : 4, 2}, 3).detach()};
  EXPECT_MG_ERROR(ac->forward(leaf({4, kDim}, 1), previous), "rank 1: ");
  // after the failures, the layers still exchange normally
  EXPECT_EQ(layer->forward(leaf({4, kDim}, 5)).y.size(0), 4);
}

TEST(MpiExpertParallel, AllToAllRowsBackwardIsTheReverseExchange) {
  // rank r sends s + 1 rows to rank s; the gradient of out is out's own values
  // scaled, so each row's gradient returns to its sender scaled the same way
  dist::CommPtr comm = dist::world();
  const int n = comm->world_size();
  std::vector<int64_t> send(n);
  for (int s = 0; s < n; ++s) send[s] = s + 1;
  const std::vector<int64_t> recv = comm->all_to_all_counts(send);
  const Tensor rows = leaf({n * (n + 1) / 2, 3}, 500 + comm->rank());
  const Tensor out = dist::all_to_all_rows(comm, rows, send, recv);
  sum(mul(out, out)).backward();  // d/dout = 2 out, back at the sender: 2 rows
  expect_near(values(rows.grad()), values(mul(rows, 2.0)), 0.0);
}

namespace {
// The sgsc model, its experts split over the ranks and the c layer's AC
// statistics over every rank's tokens (as one process over the whole batch),
// each rank with its own 2 sequences: the loss's gradients, combined as
// train_lm combines them (the replicated ones averaged over the ranks, the
// experts' divided by their number), are the one-process model's.
void expect_language_model_step_equals_one_process() {
  dist::CommPtr comm = dist::world();
  const int ranks = comm->world_size(), rank = comm->rank();
  LMConfig single_config;
  single_config.vocab = 11, single_config.max_len = 5, single_config.arch = "sgsc";
  single_config.block.dim = kDim, single_config.block.heads = 2, single_config.block.ffn_hidden = 7;
  single_config.block.moe.hidden = kHidden, single_config.block.moe.experts = kExperts, single_config.block.moe.k = 2;
  LMConfig parallel_config = single_config;
  parallel_config.block.expert_ranks = comm;
  parallel_config.block.moe.ac.stats.ranks = comm;
  Generator g_single(21), g_parallel(21);
  TransformerLM single(single_config, InitOptions{DType::Float64, &g_single});
  TransformerLM parallel(parallel_config, InitOptions{DType::Float64, &g_parallel});

  const int64_t batch = 2 * ranks, T = 5;
  std::vector<int64_t> ids(batch * (T + 1));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int64_t>((i * 7 + i / 3) % 11);
  const Tensor all = Tensor::from_indices(ids, {batch, T + 1});
  const Tensor inputs = narrow(all, 1, 0, T), targets = contiguous(narrow(all, 1, 1, T));
  const Tensor mine = contiguous(narrow(inputs, 0, 2 * rank, 2)), my_targets = contiguous(narrow(targets, 0, 2 * rank, 2));
  const Tensor single_loss = single.forward(contiguous(inputs), targets).loss;
  single_loss.backward();
  const Tensor parallel_loss = parallel.forward(mine, my_targets).loss;
  parallel_loss.backward();
  EXPECT_NEAR(dist::average_over_ranks(*comm, parallel_loss.item()), single_loss.item(), 1e-12);

  const auto p = parallel.named_parameters(), s = single.named_parameters();
  ASSERT_EQ(p.size(), s.size());
  const int64_t local = kExperts / ranks;
  for (size_t i = 0; i < p.size(); ++i) {
    SCOPED_TRACE(p[i].first);
    ASSERT_EQ(p[i].first, s[i].first);
    Tensor grad = clone(p[i].second.grad());
    if (p[i].first.find(".moe.experts.") != std::string::npos) {
      expect_near(values(mul(grad, 1.0 / ranks)), values(narrow(s[i].second.grad(), 0, rank * local, local)), 1e-12);
    } else {
      comm->all_reduce_sum({grad});
      expect_near(values(mul(grad, 1.0 / ranks)), values(s[i].second.grad()), 1e-12);
    }
  }
}
}  // namespace

TEST(MpiExpertParallel, LanguageModelStepEqualsOneProcess) { expect_language_model_step_equals_one_process(); }
TEST(MpiExpertParallel, FourRanksLanguageModelStepEqualsOneProcess) {
  expect_language_model_step_equals_one_process();
}
